"""The server's checkpoints: the global state after each round, replaced atomically and durably.

Layout in ``<run_dir>/checkpoint/``: per phase, ``<prefix>-<round>.safetensors`` (phase 1: the Global-LiGO,
prefix ``global``; phase 2's federated fine-tuning: the averaged grown model, prefix ``grown``) and a state
file (``state.json``, ``phase2-state.json``) naming it with the round and the strategy state. Each file is
written to a temporary name, fsynced, renamed, and the directory fsynced, the state file last: a server
killed (or a machine losing power) at any moment resumes from the last finished round.

A loaded checkpoint is not trusted either: a state file that does not parse names itself, and one naming a
file outside the checkpoint folder is refused (:class:`CheckpointError`).
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

STATE_FILES = {"operator": "state.json", "finetune": "phase2-state.json"}
PREFIXES = {"operator": "global", "finetune": "grown"}


class CheckpointError(RuntimeError):
    """A checkpoint on disk is broken or does not belong to this run; the message names the file."""


@dataclass
class ServerCheckpoint:
    round: int
    global_state: dict[str, torch.Tensor]
    strategy_state: dict[str, Any] = field(default_factory=dict)
    phase: str = "operator"


def checkpoint_dir(run_dir: str | Path) -> Path:
    return Path(run_dir) / "checkpoint"


def save_checkpoint(run_dir: str | Path, checkpoint: ServerCheckpoint) -> None:
    directory = checkpoint_dir(run_dir)
    directory.mkdir(parents=True, exist_ok=True)
    prefix = PREFIXES[checkpoint.phase]
    weights = f"{prefix}-{checkpoint.round:04d}.safetensors"
    _durable_write(directory / weights, lambda path: save_file(
        {k: v.contiguous() for k, v in checkpoint.global_state.items()}, str(path)))
    state = {"round": checkpoint.round, "operator": weights, "strategy_state": checkpoint.strategy_state}
    _durable_write(directory / STATE_FILES[checkpoint.phase],
                   lambda path: path.write_text(json.dumps(state), encoding="utf-8"))
    for old in directory.glob(f"{prefix}-*.safetensors"):
        if old.name != weights:
            old.unlink()


def load_checkpoint(run_dir: str | Path, phase: str = "operator") -> ServerCheckpoint | None:
    """The last complete checkpoint of ``phase``, or None if the run has none yet."""
    directory = checkpoint_dir(run_dir)
    state_file = directory / STATE_FILES[phase]
    if not state_file.exists():
        return None
    try:
        state = json.loads(state_file.read_text(encoding="utf-8"))
        round_, weights, strategy_state = int(state["round"]), str(state["operator"]), dict(state["strategy_state"])
    except (ValueError, KeyError, TypeError) as error:
        raise CheckpointError(f"{state_file} is broken (truncated or edited): {error}") from error
    if not re.fullmatch(rf"{PREFIXES[phase]}-\d{{4,}}\.safetensors", weights):
        raise CheckpointError(f"{state_file} names {weights!r}, not a checkpoint file inside {directory}")
    try:
        global_state = load_file(str(directory / weights))
    except (OSError, SafetensorError) as error:
        raise CheckpointError(f"{directory / weights} (named by {state_file}) cannot be read: {error}") from error
    return ServerCheckpoint(round_, global_state, strategy_state, phase)


def _durable_write(path: Path, write: Callable[[Path], object]) -> None:
    """``write(tmp)``, then fsync it, rename it to ``path`` and fsync the directory."""
    tmp = path.with_name(path.name + ".tmp")
    write(tmp)
    with open(tmp, "rb") as handle:
        os.fsync(handle.fileno())
    os.replace(tmp, path)
    directory = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)


def numpy_rng_state() -> dict[str, Any]:
    """NumPy's global RNG (Flower's DP noise draws from it), as JSON."""
    name, keys, pos, has_gauss, gauss = np.random.get_state()
    return {"name": name, "keys": keys.tolist(), "pos": pos, "has_gauss": has_gauss, "gauss": gauss}


def set_numpy_rng_state(state: dict[str, Any]) -> None:
    np.random.set_state(
        (state["name"], np.asarray(state["keys"], dtype=np.uint32), state["pos"], state["has_gauss"], state["gauss"])
    )
