"""The server's checkpoint: global operator + round + strategy state, replaced atomically each round.

Layout in ``<run_dir>/checkpoint/``: ``global-<round>.safetensors`` (the Global-LiGO after that
round) and ``state.json`` (round, operator file, strategy state). ``state.json`` is written last
through a temporary file and ``os.replace``, so it always names a complete operator file: a server
killed at any moment resumes from the last finished round.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file

STATE_FILE = "state.json"


@dataclass
class ServerCheckpoint:
    round: int
    global_state: dict[str, torch.Tensor]
    strategy_state: dict[str, Any] = field(default_factory=dict)


def checkpoint_dir(run_dir: str | Path) -> Path:
    return Path(run_dir) / "checkpoint"


def save_checkpoint(run_dir: str | Path, checkpoint: ServerCheckpoint) -> None:
    directory = checkpoint_dir(run_dir)
    directory.mkdir(parents=True, exist_ok=True)
    operator = f"global-{checkpoint.round:04d}.safetensors"
    save_file({k: v.contiguous() for k, v in checkpoint.global_state.items()}, str(directory / operator))
    state = {"round": checkpoint.round, "operator": operator, "strategy_state": checkpoint.strategy_state}
    tmp = directory / (STATE_FILE + ".tmp")
    tmp.write_text(json.dumps(state))
    os.replace(tmp, directory / STATE_FILE)
    for old in directory.glob("global-*.safetensors"):
        if old.name != operator:
            old.unlink()


def load_checkpoint(run_dir: str | Path) -> ServerCheckpoint | None:
    """The last complete checkpoint, or None if the run has none yet."""
    directory = checkpoint_dir(run_dir)
    if not (directory / STATE_FILE).exists():
        return None
    state = json.loads((directory / STATE_FILE).read_text())
    return ServerCheckpoint(
        round=int(state["round"]),
        global_state=load_file(str(directory / state["operator"])),
        strategy_state=state["strategy_state"],
    )


def numpy_rng_state() -> dict[str, Any]:
    """NumPy's global RNG (Flower's DP noise draws from it), as JSON."""
    name, keys, pos, has_gauss, gauss = np.random.get_state()
    return {"name": name, "keys": keys.tolist(), "pos": pos, "has_gauss": has_gauss, "gauss": gauss}


def set_numpy_rng_state(state: dict[str, Any]) -> None:
    np.random.set_state(
        (state["name"], np.asarray(state["keys"], dtype=np.uint32), state["pos"], state["has_gauss"], state["gauss"])
    )
