"""Run a whole Fed-Grow federation on this machine with Flower's simulation engine (Ray backend).

Each party is a virtual SuperNode (``partition-id`` = its index in ``[[parties]]``) running the
same ``ClientApp`` as a real deployment; the ``ServerApp`` is the deployment's too. Only the
transport differs.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
from flwr.clientapp.typing import Mod
from flwr.simulation import run_simulation
from safetensors.torch import load_file

from .client_app import make_client_app
from .config import FederationConfig
from .server_app import FINAL_OPERATOR, RoundCallback, make_server_app


def simulate(
    config: FederationConfig,
    run_dir: str | Path,
    *,
    resume: bool = False,
    on_round: RoundCallback | None = None,
    client_mods: list[Mod] | None = None,
    cpus_per_party: float = 1.0,
) -> dict[str, torch.Tensor]:
    """Run phase 1 (and phase 2 if configured); returns the final Global-LiGO.

    ``run_dir`` receives ``metrics.jsonl``, ``global_operator.safetensors``, the server checkpoint
    and each party's private folder (``parties/party-<id>``, which in a real deployment would be on
    the party's own machine). ``client_mods`` are Flower mods wrapped around every party's app.
    """
    run_dir = Path(run_dir).resolve()
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    server = make_server_app(config, run_dir, resume=resume, on_round=on_round)
    client = make_client_app(config, str(run_dir), mods=client_mods)
    run_simulation(
        server_app=server,
        client_app=client,
        num_supernodes=config.num_parties,
        backend_config={"client_resources": {"num_cpus": cpus_per_party, "num_gpus": 0.0}},
    )
    return load_file(str(run_dir / FINAL_OPERATOR))
