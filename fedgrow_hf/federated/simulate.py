"""Run a whole Fed-Grow federation on this machine.

Two engines, one federation: with ``engine="ray"`` (the default) Flower's simulation engine runs each
party as a virtual SuperNode (``partition-id`` = its index in ``[[parties]]``) in a Ray actor; with
``engine="inprocess"`` (:mod:`.inprocess`) the parties' ``ClientApp`` answers in this process, one
party after another, on this process's device (a GPU if there is one) and without Ray. Either way the
``ClientApp`` and the server logic are a real deployment's; only the transport differs.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
from flwr.clientapp.typing import Mod
from flwr.simulation import run_simulation
from safetensors.torch import load_file

from ..experiment.config import FederationConfig
from ..experiment.data import check_data
from ..experiment.parties import reference_shared_state
from .checkpoint import CheckpointError, load_checkpoint
from .client_app import make_client_app
from .engine import SimulationEngine, as_engine
from .inprocess import InProcessGrid
from .phases import METRICS_FILE
from .records import Record, read_records
from .server_app import FINAL_OPERATOR, RoundCallback, check_resumable, make_server_app, run_federation

# what a run folder holds: its records (one JSON line per evaluation) and the final Global-LiGO
__all__ = ["FINAL_OPERATOR", "METRICS_FILE", "resumable_round", "run_records", "simulate"]


def simulate(
    config: FederationConfig,
    run_dir: str | Path,
    *,
    resume: bool = False,
    on_round: RoundCallback | None = None,
    client_mods: list[Mod] | None = None,
    engine: str | SimulationEngine = "ray",
) -> dict[str, torch.Tensor]:
    """Run phase 1 (and phase 2 if configured); returns the final Global-LiGO (with ``share_head``, and the task
    head under ``head.``: ``FedGrowTrainer(shared_heads=...).set_global_state`` loads both).

    ``run_dir`` receives ``metrics.jsonl`` (:data:`METRICS_FILE`), ``global_operator.safetensors``, the server checkpoint
    and each party's private folder (``parties/party-<id>``, which in a real deployment would be on
    the party's own machine). ``client_mods`` are Flower mods wrapped around every party's app.
    ``engine`` is ``"ray"``, ``"inprocess"`` or a :class:`SimulationEngine` with Ray's CPU and GPU share per party.
    """
    engine = as_engine(engine)
    if engine.name == "inprocess" and config.secure_aggregation.enabled:
        raise ValueError("secure aggregation needs Flower's simulation engine: use engine='ray'")
    check_data(config)  # bad labels stop the run here, before its folder exists
    run_dir = Path(run_dir).resolve()
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    client = make_client_app(config, str(run_dir), mods=client_mods)
    if engine.name == "inprocess":
        with InProcessGrid(client, config.num_parties).serving() as grid:
            return run_federation(grid, config, run_dir, resume=resume, on_round=on_round)
    backend_config = engine.ray_backend_config()
    server = make_server_app(config, run_dir, resume=resume, on_round=on_round)
    run_simulation(
        server_app=server,
        client_app=client,
        num_supernodes=config.num_parties,
        backend_config=backend_config,
    )
    return load_file(str(run_dir / FINAL_OPERATOR))


def resumable_round(run_dir: str | Path, config: FederationConfig) -> int | None:
    """The last phase-1 round ``run_dir`` holds a valid checkpoint of for ``config`` (what
    ``run_federation(..., resume=True)`` continues after), or None where it holds none, or one of another
    config or that is not valid: a driver of many runs (``fedgrow reproduce --resume``) then starts afresh."""
    run_dir = Path(run_dir)
    try:
        checkpoint = load_checkpoint(run_dir)
        if checkpoint is None:
            return None
        check_resumable(run_dir, config, checkpoint, reference_shared_state(config))
    except CheckpointError:
        return None
    return checkpoint.round


def run_records(run_dir: str | Path) -> list[Record]:
    """The records a run in ``run_dir`` wrote (:data:`METRICS_FILE`): its whole lines, in order."""
    return read_records(Path(run_dir) / METRICS_FILE)
