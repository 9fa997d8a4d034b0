"""The server's checkpoints: the global state after each round, replaced atomically and durably.

Layout in ``<run_dir>/checkpoint/``: per phase, ``<prefix>-<round>.safetensors`` (phase 1: the Global-LiGO,
prefix ``global``; phase 2's federated fine-tuning: the averaged grown model, prefix ``grown``) and a state
file (``state.json``, ``phase2-state.json``) naming it with the round and the strategy state. Each file is
written to a temporary name, fsynced, renamed, and the directory fsynced, the state file last: a server
killed (or a machine losing power) at any moment resumes from the last finished round.

A loaded checkpoint is not trusted either: a state file that does not parse, whose round is not a positive
integer, that names a file outside the checkpoint folder or whose weights file does not have the SHA-256 it
records is refused (:class:`CheckpointError`, naming the file). The state file also records which run wrote
it (``run``: the run's id and its config's hash, :func:`run_identity`), so that the server resumes only its
own checkpoints, and the party-id bindings of the run's nodes (:func:`party_bindings`).
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from .disk import durable_write

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
    run: dict[str, str] = field(default_factory=dict)  # the run that wrote it (:func:`run_identity`)


def run_identity(run_id: str, config_json: str) -> dict[str, str]:
    """What binds a checkpoint to its run: the run's id and the SHA-256 of its config."""
    return {"run_id": run_id, "config_sha256": hashlib.sha256(config_json.encode("utf-8")).hexdigest()}


def checkpoint_dir(run_dir: str | Path) -> Path:
    return Path(run_dir) / "checkpoint"


def save_checkpoint(run_dir: str | Path, checkpoint: ServerCheckpoint) -> None:
    directory = checkpoint_dir(run_dir)
    directory.mkdir(parents=True, exist_ok=True)
    prefix = PREFIXES[checkpoint.phase]
    weights = f"{prefix}-{checkpoint.round:04d}.safetensors"
    durable_write(directory / weights, lambda path: save_file(
        {k: v.contiguous() for k, v in checkpoint.global_state.items()}, str(path)))
    state = {"round": checkpoint.round, "operator": weights, "sha256": _file_sha256(directory / weights),
             "run": checkpoint.run, "strategy_state": checkpoint.strategy_state}
    durable_write(directory / STATE_FILES[checkpoint.phase],
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
        round_, weights, digest = state["round"], str(state["operator"]), str(state["sha256"])
        strategy_state, run = dict(state["strategy_state"]), {str(k): str(v) for k, v in dict(state["run"]).items()}
    except (ValueError, KeyError, TypeError) as error:
        raise CheckpointError(f"{state_file} is broken (truncated or edited): missing or malformed {error}") from error
    if not isinstance(round_, int) or isinstance(round_, bool) or round_ < 1:
        raise CheckpointError(f"{state_file} is broken (truncated or edited): round={round_!r} is not a round number")
    if not re.fullmatch(rf"{PREFIXES[phase]}-\d{{4,}}\.safetensors", weights):
        raise CheckpointError(f"{state_file} names {weights!r}, not a checkpoint file inside {directory}")
    try:
        actual = _file_sha256(directory / weights)
        global_state = load_file(str(directory / weights))
    except (OSError, SafetensorError) as error:
        raise CheckpointError(f"{directory / weights} (named by {state_file}) cannot be read: {error}") from error
    if actual != digest:
        raise CheckpointError(f"{directory / weights} is not the file {state_file} recorded (its SHA-256 differs): "
                              "edited or swapped")
    return ServerCheckpoint(round_, global_state, strategy_state, phase, run)


def party_bindings(strategy_state: dict[str, Any]) -> dict[int, int]:
    """The checkpointed node -> party bindings (``strategy_state["parties"]``; none in a run's first round)."""
    raw = strategy_state.get("parties", {})
    try:
        bindings = {int(node): party for node, party in dict(raw).items()}
    except (TypeError, ValueError) as error:
        raise CheckpointError(f"the checkpoint's party bindings are malformed: {error}") from error
    if not all(isinstance(party, int) and not isinstance(party, bool) for party in bindings.values()):
        raise CheckpointError(f"the checkpoint's party bindings are malformed: {raw!r:.100}")
    return bindings


def _file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def numpy_rng_state() -> dict[str, Any]:
    """NumPy's global RNG (Flower's DP noise draws from it), as JSON."""
    name, keys, pos, has_gauss, gauss = np.random.get_state()
    return {"name": name, "keys": keys.tolist(), "pos": pos, "has_gauss": has_gauss, "gauss": gauss}


def set_numpy_rng_state(state: dict[str, Any] | None) -> None:
    """Restore NumPy's global RNG from :func:`numpy_rng_state`; :class:`CheckpointError` if it is malformed."""
    try:
        np.random.set_state(
            (state["name"], np.asarray(state["keys"], dtype=np.uint32), state["pos"], state["has_gauss"], state["gauss"])
        )
    except (KeyError, TypeError, ValueError) as error:
        raise CheckpointError(f"the checkpoint's strategy_state has no valid numpy_rng: {error!r:.100}") from error
