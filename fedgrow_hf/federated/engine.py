"""How ``simulate`` runs a federation's parties on one machine: the engine and what each party gets.

Kept apart from :class:`~fedgrow_hf.experiment.config.FederationConfig` on purpose: the same federation,
with the same results, runs under either engine and any resource share, so none of this belongs in the
config a run is keyed and reproduced by. Importing this module needs neither Flower nor Ray.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch

# Flower's simulation engine (one Ray actor per party) or this process, one party after another (`.inprocess`).
ENGINES = ("ray", "inprocess")


@dataclass(frozen=True)
class SimulationEngine:
    """The engine (``"ray"`` or ``"inprocess"``) and, for Ray, each party's share of this machine.

    ``gpus_per_party`` is Ray's GPU share per party actor (``0.5``: two parties per GPU); without it Ray gives
    the parties no GPU and they train on the CPU even on a GPU machine. The in-process engine needs no
    shares: every party trains on this process's device (a GPU if there is one).
    """

    name: str = "ray"
    cpus_per_party: float = 1.0
    gpus_per_party: float = 0.0

    def __post_init__(self) -> None:
        if self.name not in ENGINES:
            raise ValueError(f"unknown engine {self.name!r}; engines: {', '.join(ENGINES)}")
        if not (math.isfinite(self.cpus_per_party) and self.cpus_per_party > 0):
            raise ValueError(f"cpus_per_party must be a positive number, got {self.cpus_per_party}")
        if not (math.isfinite(self.gpus_per_party) and self.gpus_per_party >= 0):
            raise ValueError(f"gpus_per_party must be >= 0, got {self.gpus_per_party}")
        if self.name != "ray" and (self.cpus_per_party != 1.0 or self.gpus_per_party != 0.0):
            raise ValueError(f"cpus_per_party and gpus_per_party are Ray's shares; the {self.name!r} engine runs "
                             "every party in this process, on its device")

    def ray_backend_config(self) -> dict[str, Any]:
        """Flower's ``backend_config`` for Ray; raises if GPUs are asked for where there are none (Ray would
        wait for them forever)."""
        if self.gpus_per_party > 0 and not torch.cuda.is_available():
            raise ValueError(f"gpus_per_party={self.gpus_per_party:g} but this machine has no CUDA device")
        return {"client_resources": {"num_cpus": self.cpus_per_party, "num_gpus": self.gpus_per_party}}

    def cli_words(self) -> list[str]:
        """The ``fedgrow`` command-line options that select this engine (none for the defaults)."""
        words = [] if self.name == "ray" else ["--engine", self.name]
        if self.cpus_per_party != 1.0:
            words += ["--cpus-per-party", f"{self.cpus_per_party:g}"]
        if self.gpus_per_party != 0.0:
            words += ["--gpus-per-party", f"{self.gpus_per_party:g}"]
        return words


def as_engine(engine: str | SimulationEngine) -> SimulationEngine:
    """An engine name stands for that engine with the default shares."""
    return engine if isinstance(engine, SimulationEngine) else SimulationEngine(engine)
