"""The server's side of Fed-Grow that both phase-1 paths share -- the plain one (:mod:`.server_app`) and
the SecAgg+ one (:mod:`.secure_aggregation`): run records, bounded waits for parties, and phase 2.

Phase 2 (``phase2``): ``"local"`` -- every party merges its grown model and fine-tunes it alone,
reporting its final metrics and its held-out learning curve (one record, each party's points under
``curve``); ``"federated"`` -- FedAvg of the merged grown models for ``finetune_rounds``
rounds (the comparison baseline); ``"merge"`` -- every party merges its final operator once and keeps
that model, reporting its held-out figures (the operator-only regime of the Fed-Grow paper); ``"none"``.
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from flwr.app import ArrayRecord, ConfigRecord, Message, RecordDict
from flwr.serverapp import Grid
from safetensors.torch import save_file

from ..experiment.config import FederationConfig
from ..experiment.parties import reference_target_state
from ..experiment.training import finetune_eval_steps
from .checkpoint import (
    CheckpointError,
    ServerCheckpoint,
    load_checkpoint,
    party_bindings,
    run_identity,
    save_checkpoint,
)
from .disclosure import FIGURES_ONLY, finetune_disclosure, finetune_reply_fields
from .records import append_record, truncate_records
from .screening import (
    ARRAYS_KEY,
    CONFIG_KEY,
    FINETUNE_CURVE,
    METRICS_KEY,
    WEIGHT_KEY,
    DroppedUpdate,
    ReplyScreen,
    payload_bytes,
)
from .strategy import ScreenedStrategy, aggregate_problem, build_strategy

logger = logging.getLogger(__name__)

METRICS_FILE = "metrics.jsonl"
CONFIG_FILE = "config.json"
RUN_FILE = "run.json"  # the run's id, which its checkpoints record (checkpoint.run_identity)
FINAL_OPERATOR = "global_operator.safetensors"
FINETUNE_MESSAGE = "train.finetune"

RoundCallback = Callable[[dict[str, Any]], None]


def start_run(run_dir: Path, config: FederationConfig) -> None:
    """A new run in ``run_dir``: no metrics of an earlier one, the config it runs with (what resume checks)
    and a new run id (what binds its checkpoints to it)."""
    (run_dir / METRICS_FILE).unlink(missing_ok=True)
    (run_dir / CONFIG_FILE).write_text(json.dumps(config.to_dict(), indent=2))
    (run_dir / RUN_FILE).write_text(json.dumps({"run_id": uuid.uuid4().hex}))


def started_config(run_dir: Path, config: FederationConfig) -> dict[str, Any]:
    """The config ``run_dir``'s run started with, as its ``config.json`` holds it, once checked to be ``config``
    (:meth:`FederationConfig.read_back`: a run of an older release resumes)."""
    saved_file = run_dir / CONFIG_FILE
    try:
        saved = json.loads(saved_file.read_text(encoding="utf-8"))
        started = FederationConfig.read_back(saved)
    except (OSError, ValueError) as error:
        raise CheckpointError(f"{saved_file} (the run's config) cannot be read: {error}") from error
    current = config.to_dict()
    differ = sorted(key for key in set(started) | set(current) if started.get(key) != current.get(key))
    if differ:
        raise CheckpointError(
            f"cannot resume {run_dir}: the config differs from the one it was started with in {differ}; "
            "resume with the same config or start a new run folder"
        )
    return saved


def checkpoint_identity(run_dir: Path, config: FederationConfig) -> dict[str, str]:
    """The identity this run's checkpoints carry (:func:`.checkpoint.run_identity`): its id and the hash of the
    config it started with (:func:`started_config`; for a new run, ``config`` itself)."""
    run_file = run_dir / RUN_FILE
    try:
        run_id = str(json.loads(run_file.read_text(encoding="utf-8"))["run_id"])
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise CheckpointError(f"{run_file} (the run's id) cannot be read: {error!r:.100}") from error
    return run_identity(run_id, json.dumps(started_config(run_dir, config), sort_keys=True))


def check_checkpoint_run(checkpoint: ServerCheckpoint, run_dir: Path, config: FederationConfig) -> None:
    """Refuse a checkpoint that another run (or this run with another config) wrote."""
    if checkpoint.run != checkpoint_identity(run_dir, config):
        raise CheckpointError(
            f"the {checkpoint.phase} checkpoint of round {checkpoint.round} in {run_dir} was not written by this run "
            "with this config (its run id or config hash differs): copied from another run folder or edited"
        )


class FederationAborted(RuntimeError):
    """Too few valid updates in a round, even after retries; the last checkpoint is intact."""


def party_reports(screen: ReplyScreen, replies: list[Message], down: int) -> dict[str, dict[str, Any]]:
    """Each screened reply's metrics under the party its node is bound to, with the bytes it moved."""
    return {
        str(screen.party_of(message)): {
            **dict(message.content[METRICS_KEY]),
            "bytes_up": payload_bytes(message.content[ARRAYS_KEY]) if ARRAYS_KEY in message.content.array_records else 0,
            "bytes_down": down,
        }
        for message in replies
    }


def run_phase2(
    grid: Grid, config: FederationConfig, run_dir: Path, arrays: ArrayRecord, on_round: RoundCallback | None,
    *, resume: bool = False, bindings: dict[int, int] | None = None,
) -> None:
    """Phase 2: local fine-tuning of every party's merged model, or FedAvg of the merged models.

    Replies go through the same screen as phase 1 (against the grown model's keys and shapes when they
    carry a model), with phase 1's node -> party ``bindings`` (updated in place); each federated
    round's average is clipped and checked (round 1, where the parties start from their own merged models, is
    their coordinate-wise median: :class:`.strategy.ScreenedStrategy`), then checkpointed with the bindings, and ``resume``
    continues after the last checkpointed round."""
    fed = config.federation
    federated = fed.phase2 == "federated"
    reference = reference_target_state(config) if federated else None
    metric_names, curve_names, counts_examples = finetune_reply_fields(config)
    curve_steps = finetune_eval_steps(config) if curve_names else []
    screen = ReplyScreen(reference, metric_names, config.num_parties,
                         fed.max_update_bytes or state_bytes(reference), fed.max_num_examples, fed.update_norm_bound,
                         curve_names=curve_names, curve_length=len(curve_steps), counts_examples=counts_examples,
                         parties=bindings if bindings is not None else {})
    averager = ScreenedStrategy(build_strategy(config, with_dp=False), screen, fed.min_train_nodes,
                                fed.update_clip_factor)
    current: dict[str, torch.Tensor] | None = None  # the averaged model the parties start from (round >= 2)
    first = 1
    checkpoint = load_checkpoint(run_dir, "finetune") if resume and federated else None
    if resume and _resume_records(run_dir, fed.phase2, checkpoint):
        logger.info("phase 2 (%s) of %s is already recorded: not run again", fed.phase2, run_dir)
        return
    if checkpoint is not None:
        check_checkpoint_run(checkpoint, run_dir, config)
        screen.parties.update(party_bindings(checkpoint.strategy_state))
        problem = aggregate_problem(checkpoint.global_state, reference)
        if problem:
            raise CheckpointError(f"the phase-2 checkpoint of round {checkpoint.round} in {run_dir} is not valid: {problem}")
        current, first, arrays = checkpoint.global_state, checkpoint.round + 1, ArrayRecord(checkpoint.global_state)
    if checkpoint is None and fed.finetune_init == "random":
        arrays = ArrayRecord()  # Fed-Scratch: every party builds the seeded random start itself, so round 1 sends none
    identity = checkpoint_identity(run_dir, config) if federated else {}  # what every phase-2 checkpoint carries
    for finetune_round in range(first, (fed.finetune_rounds if federated else 1) + 1):
        started = time.monotonic()
        nodes = wait_for_nodes(grid, config, f"phase 2 round {finetune_round}")  # rounds = 0: phase 2 comes first
        settings = ConfigRecord({"mode": fed.phase2, "finetune-round": finetune_round, "init": fed.finetune_init})
        messages = [
            Message(RecordDict({ARRAYS_KEY: arrays, CONFIG_KEY: settings}), dst_node_id=node, message_type=FINETUNE_MESSAGE)
            for node in nodes
        ]
        averager.current = current
        screen.connected = set(nodes)
        replies = list(grid.send_and_receive(messages, timeout=fed.round_timeout))
        aggregated, _ = averager.aggregate_train(finetune_round, replies)
        if averager.last.problem is not None:
            raise FederationAborted(f"phase 2 round {finetune_round}: {averager.last.problem}")
        parties = {party: with_curve(metrics, curve_steps) for party, metrics in
                   party_reports(screen, averager.last.valid, payload_bytes(arrays)).items()}
        report = {
            "phase": f"finetune-{fed.phase2}",
            "round": finetune_round,
            **({"party_metrics": finetune_disclosure(config)} if config.secure_aggregation.enabled else {}),
            **weighted_means(parties, tuple(name for name in ("train_loss", "eval_loss_before", "eval_loss", "accuracy")
                                            if name in metric_names)),
            "parties": parties,
            "dropped": dropped_records(averager.last.dropped, attempt=1),
            "clipped": averager.last.clipped,
            **({"aggregate": averager.last.aggregate} if averager.last.aggregate else {}),
            "no_reply": len(messages) - len(replies),
            "seconds": round(time.monotonic() - started, 3),
        }
        report["loss"] = report.get("eval_loss")
        record_round(run_dir, report, on_round)  # before the checkpoint: a resume cuts a record it does not cover
        if aggregated is not None:
            current = averager.last.state
            save_checkpoint(run_dir, ServerCheckpoint(finetune_round, current, {"parties": screen_bindings(screen)},
                                                      "finetune", identity))
            arrays = aggregated
    if federated and current is not None:
        save_file(current, str(run_dir / "grown_model_fedavg.safetensors"))


def _resume_records(run_dir: Path, mode: str, checkpoint: ServerCheckpoint | None) -> bool:
    """Cut ``metrics.jsonl`` back to the phase-2 rounds a resume keeps (federated: those its checkpoint
    holds); whether phase 2 is already done (local or merge: its one record is there)."""
    phase, done, once = f"finetune-{mode}", checkpoint.round if checkpoint else 0, mode in FIGURES_ONLY
    kept = truncate_records(run_dir / METRICS_FILE,
                            lambda record: record.get("phase") != phase or once or record.get("round", 0) <= done)
    return once and any(record.get("phase") == phase for record in kept)


def screen_bindings(screen: ReplyScreen) -> dict[str, int]:
    """The screen's node -> party bindings as a checkpoint's strategy state holds them (JSON keys)."""
    return {str(node): party for node, party in screen.parties.items()}


def dropped_records(dropped: list[DroppedUpdate], attempt: int) -> list[dict[str, Any]]:
    """The replies the screen dropped in one attempt of a round, as a round's report lists them."""
    return [{"attempt": attempt, "party": d.party, "node": d.node_id, "reason": d.reason} for d in dropped]


def with_curve(metrics: dict[str, Any], steps: list[int]) -> dict[str, Any]:
    """A party's screened phase-2 metrics with its curve lists (``FINETUNE_CURVE``) turned into one
    ``curve`` of points, each with the phase-2 step it was measured after."""
    if not steps:
        return metrics
    curves = {name.removeprefix("curve_"): metrics[name] for name in FINETUNE_CURVE}
    final = {name: value for name, value in metrics.items() if name not in FINETUNE_CURVE}
    return {**final, "curve": [{"steps": step, **{name: values[index] for name, values in curves.items()}}
                               for index, step in enumerate(steps)]}


def state_bytes(state: dict[str, torch.Tensor] | None) -> int:
    return sum(value.numel() * value.element_size() for value in (state or {}).values()) + 1024 * len(state or {})


def wait_for_nodes(grid: Grid, config: FederationConfig, what: str) -> list[int]:
    """The connected nodes, once all parties are there or ``round_timeout`` has passed, whichever is first;
    :class:`FederationAborted` if fewer than ``min_train_nodes`` connected by then."""
    fed = config.federation
    deadline = time.monotonic() + fed.round_timeout
    while len(nodes := list(grid.get_node_ids())) < config.num_parties and time.monotonic() < deadline:
        time.sleep(0.5)
    if len(nodes) < fed.min_train_nodes:
        raise FederationAborted(
            f"{what}: {len(nodes)} of {config.num_parties} parties connected within round_timeout={fed.round_timeout} s, "
            f"fewer than min_train_nodes={fed.min_train_nodes}"
        )
    if len(nodes) < config.num_parties:
        logger.warning("%s: going on with %d of %d parties connected", what, len(nodes), config.num_parties)
    return nodes


def weighted_means(parties: dict[str, dict[str, Any]], names: tuple[str, ...]) -> dict[str, float]:
    """Example-weighted means of the parties' metrics; none where a party did not disclose them all."""
    if not parties or any(not {WEIGHT_KEY, *names} <= set(p) for p in parties.values()):
        return {}
    total = sum(p[WEIGHT_KEY] for p in parties.values())
    return {name: sum(p[name] * p[WEIGHT_KEY] for p in parties.values()) / total for name in names}


def record_round(run_dir: Path, report: dict[str, Any], on_round: RoundCallback | None) -> None:
    """Append one round's report to the run's metrics file (what resume, cards and reports read) as one
    whole line (:mod:`.records`)."""
    append_record(run_dir / METRICS_FILE, report)
    if on_round is not None:
        on_round(report)
