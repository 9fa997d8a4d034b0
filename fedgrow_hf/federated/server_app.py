"""The Fed-Grow server as a Flower ``ServerApp`` (Message API + ``Grid``).

Phase 1 runs ``rounds`` rounds of federated Global-LiGO training: the current Global-LiGO goes to
every party, the replies are screened (:mod:`.strategy`), and Flower's FedAvg (optionally inside
Flower's DP fixed-clipping wrapper) averages the valid ones, weighted by example counts. A round
with fewer than ``min_train_nodes`` valid updates is run again up to ``round_retries`` times, then
the federation stops cleanly with :class:`FederationAborted` (the last checkpoint stays valid).
After every round the server checkpoints atomically and appends a line to ``metrics.jsonl``.

Phase 2 (``phase2``): ``"local"`` -- every party merges its grown model and fine-tunes it alone,
reporting metrics; ``"federated"`` -- FedAvg of the merged grown models for ``finetune_rounds``
rounds (the comparison baseline); ``"none"``.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from flwr.app import ArrayRecord, ConfigRecord, Context, Message, RecordDict
from flwr.serverapp import Grid, ServerApp
from flwr.serverapp.strategy import Strategy
from safetensors.torch import save_file

from .checkpoint import (
    CheckpointError,
    ServerCheckpoint,
    load_checkpoint,
    numpy_rng_state,
    save_checkpoint,
    set_numpy_rng_state,
)
from .config import FederationConfig, resolve_run
from .screening import (
    ARRAYS_KEY,
    CONFIG_KEY,
    FINETUNE_METRICS,
    METRICS_KEY,
    OPERATOR_METRICS,
    WEIGHT_KEY,
    ReplyScreen,
    payload_bytes,
)
from .strategy import aggregate_problem, build_strategy
from .task import reference_global_stage, reference_target_state

logger = logging.getLogger(__name__)

METRICS_FILE = "metrics.jsonl"
CONFIG_FILE = "config.json"
FINAL_OPERATOR = "global_operator.safetensors"
FINETUNE_MESSAGE = "train.finetune"

RoundCallback = Callable[[dict[str, Any]], None]


class FederationAborted(RuntimeError):
    """Too few valid updates in a round, even after retries; the last checkpoint is intact."""


def run_federation(
    grid: Grid,
    config: FederationConfig,
    run_dir: str | Path,
    *,
    resume: bool = False,
    on_round: RoundCallback | None = None,
) -> dict[str, torch.Tensor]:
    """Run both phases of Fed-Grow; returns the final Global-LiGO (also saved in ``run_dir``)."""
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    reference = reference_global_stage(config).state_dict()
    checkpoint = load_checkpoint(run_dir)
    if checkpoint is not None and not resume:
        raise FileExistsError(f"{run_dir} holds a checkpoint of an earlier run: resume it or use a new run folder")
    if checkpoint is None:
        (run_dir / METRICS_FILE).unlink(missing_ok=True)
        (run_dir / CONFIG_FILE).write_text(json.dumps(config.to_dict(), indent=2))
        np.random.seed(config.seed)
    else:
        check_resumable(run_dir, config, checkpoint, reference)
        set_numpy_rng_state(checkpoint.strategy_state["numpy_rng"])
        logger.info("resuming %s after round %d", run_dir, checkpoint.round)

    state = checkpoint.global_state if checkpoint else reference
    max_bytes = config.federation.max_update_bytes or payload_bytes(ArrayRecord(reference))
    strategy = build_strategy(config)
    screen = ReplyScreen(reference, OPERATOR_METRICS, config.num_parties, max_bytes,
                         config.federation.max_num_examples, config.federation.update_norm_bound)
    for server_round in range((checkpoint.round + 1) if checkpoint else 1, config.federation.rounds + 1):
        state, report = _operator_round(grid, config, strategy, screen, state, server_round)
        record_round(run_dir, report, on_round)
        strategy_state = {"numpy_rng": numpy_rng_state()}
        save_checkpoint(run_dir, ServerCheckpoint(server_round, state, strategy_state))

    save_file(state, str(run_dir / FINAL_OPERATOR), metadata={"format": "pt", "fedgrow": "global-ligo"})
    if config.federation.phase2 != "none":
        run_phase2(grid, config, run_dir, ArrayRecord(state), on_round, resume=resume)
    return state


def check_resumable(
    run_dir: Path, config: FederationConfig, checkpoint: ServerCheckpoint, reference: dict[str, torch.Tensor]
) -> None:
    """Refuse to resume a run with another config, or from a checkpoint that is not a valid state of it."""
    saved_file = run_dir / CONFIG_FILE
    try:
        saved = json.loads(saved_file.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise CheckpointError(f"{saved_file} (the run's config) cannot be read: {error}") from error
    current = config.to_dict()
    differ = sorted(key for key in set(saved) | set(current) if saved.get(key) != current.get(key))
    if differ:
        raise CheckpointError(
            f"cannot resume {run_dir}: the config differs from the one it was started with in {differ}; "
            "resume with the same config or start a new run folder"
        )
    problem = aggregate_problem(checkpoint.global_state, reference)
    if problem:
        raise CheckpointError(f"the checkpoint of round {checkpoint.round} in {run_dir} is not valid: {problem}")


def _operator_round(
    grid: Grid,
    config: FederationConfig,
    strategy: Strategy,
    screen: ReplyScreen,
    state: dict[str, torch.Tensor],
    server_round: int,
) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """One phase-1 round: send ``state``, screen the replies, aggregate; run again (up to ``round_retries``
    times) while fewer than ``min_train_nodes`` updates are valid or their aggregate is not."""
    fed = config.federation
    started = time.monotonic()
    arrays = ArrayRecord(state)
    all_dropped: list[dict[str, Any]] = []
    for attempt in range(1, fed.round_retries + 2):
        wait_for_nodes(grid, config, f"round {server_round}")
        train_config = ConfigRecord({"local-steps": fed.local_steps, "attempt": attempt})
        messages = list(strategy.configure_train(server_round, arrays, train_config, grid))
        replies = list(grid.send_and_receive(messages, timeout=fed.round_timeout))
        valid, dropped = screen.screen(replies, state)
        silent = len(messages) - len(replies)
        all_dropped += [{"attempt": attempt, "party": d.party, "node": d.node_id, "reason": d.reason} for d in dropped]
        problem = f"{len(valid)} valid updates < min_train_nodes={fed.min_train_nodes}"
        if len(valid) >= fed.min_train_nodes:
            aggregated, _ = strategy.aggregate_train(server_round, valid)
            # Flower's DP noise comes back as float64: the Global-LiGO keeps the reference dtypes
            new_state = {key: value.to(state[key].dtype) for key, value in aggregated.to_torch_state_dict().items()}
            problem = aggregate_problem(new_state, state)
            if problem is None:
                break
            all_dropped.append({"attempt": attempt, "party": None, "node": None, "reason": problem})
        logger.warning("round %d attempt %d: %s (%d dropped, %d without reply)",
                       server_round, attempt, problem, len(dropped), silent)
    else:
        raise FederationAborted(
            f"round {server_round}: fewer than min_train_nodes={fed.min_train_nodes} valid updates (or no valid "
            f"aggregate of them) after {fed.round_retries + 1} attempts; the checkpoint of round {server_round - 1} is intact"
        )
    parties = _party_reports(screen, valid, payload_bytes(arrays))
    report = {
        "phase": "operator",
        "round": server_round,
        "attempts": attempt,
        **weighted_means(parties, ("train_loss", "eval_loss_before", "eval_loss", "accuracy")),
        "parties": parties,
        "dropped": all_dropped,
        "no_reply": silent,
        "seconds": round(time.monotonic() - started, 3),
    }
    report["loss"] = report["eval_loss"]
    return new_state, report


def _party_reports(screen: ReplyScreen, replies: list[Message], down: int) -> dict[str, dict[str, Any]]:
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
    *, resume: bool = False,
) -> None:
    """Phase 2: local fine-tuning of every party's merged model, or FedAvg of the merged models.

    Replies go through the same screen as phase 1 (against the grown model's keys and shapes when they
    carry a model); each federated round's average is checked, then checkpointed, and ``resume`` continues
    after the last checkpointed round."""
    fed = config.federation
    federated = fed.phase2 == "federated"
    reference = reference_target_state(config) if federated else None
    screen = ReplyScreen(reference, FINETUNE_METRICS, config.num_parties,
                         fed.max_update_bytes or _state_bytes(reference), fed.max_num_examples, fed.update_norm_bound)
    averager = build_strategy(config)
    current: dict[str, torch.Tensor] | None = None  # the averaged model the parties start from (round >= 2)
    first = 1
    checkpoint = load_checkpoint(run_dir, "finetune") if resume and federated else None
    if checkpoint is not None:
        problem = aggregate_problem(checkpoint.global_state, reference)
        if problem:
            raise CheckpointError(f"the phase-2 checkpoint of round {checkpoint.round} in {run_dir} is not valid: {problem}")
        current, first, arrays = checkpoint.global_state, checkpoint.round + 1, ArrayRecord(checkpoint.global_state)
    for finetune_round in range(first, (fed.finetune_rounds if federated else 1) + 1):
        started = time.monotonic()
        nodes = wait_for_nodes(grid, config, f"phase 2 round {finetune_round}")  # rounds = 0: phase 2 comes first
        settings = ConfigRecord({"mode": fed.phase2, "finetune-round": finetune_round, "init": fed.finetune_init})
        messages = [
            Message(RecordDict({ARRAYS_KEY: arrays, CONFIG_KEY: settings}), dst_node_id=node, message_type=FINETUNE_MESSAGE)
            for node in nodes
        ]
        replies, _ = screen.screen(grid.send_and_receive(messages, timeout=fed.round_timeout), current)
        if len(replies) < fed.min_train_nodes:
            raise FederationAborted(
                f"phase 2 round {finetune_round}: {len(replies)} valid replies < min_train_nodes={fed.min_train_nodes}"
            )
        parties = _party_reports(screen, replies, payload_bytes(arrays))
        if federated:
            aggregated, _ = averager.aggregate_train(finetune_round, replies)
            current = {key: value.to(reference[key].dtype) for key, value in aggregated.to_torch_state_dict().items()}
            problem = aggregate_problem(current, reference)
            if problem:
                raise FederationAborted(f"phase 2 round {finetune_round}: {problem}")
            save_checkpoint(run_dir, ServerCheckpoint(finetune_round, current, phase="finetune"))
            arrays = ArrayRecord(current)
        report = {
            "phase": f"finetune-{fed.phase2}",
            "round": finetune_round,
            **weighted_means(parties, ("train_loss", "eval_loss", "accuracy")),
            "parties": parties,
            "seconds": round(time.monotonic() - started, 3),
        }
        report["loss"] = report["eval_loss"]
        record_round(run_dir, report, on_round)
    if federated and current is not None:
        save_file(current, str(run_dir / "grown_model_fedavg.safetensors"))


def _state_bytes(state: dict[str, torch.Tensor] | None) -> int:
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
    """Example-weighted means of the parties' metrics."""
    total = sum(p[WEIGHT_KEY] for p in parties.values())
    return {name: sum(p[name] * p[WEIGHT_KEY] for p in parties.values()) / total for name in names}


def record_round(run_dir: Path, report: dict[str, Any], on_round: RoundCallback | None) -> None:
    """Append one round's report to the run's metrics file (what resume, cards and reports read)."""
    with open(run_dir / METRICS_FILE, "a", encoding="utf-8") as handle:
        handle.write(json.dumps(report) + "\n")
    if on_round is not None:
        on_round(report)


def make_server_app(
    config: FederationConfig | None = None,
    run_dir: str | Path | None = None,
    *,
    resume: bool = False,
    on_round: RoundCallback | None = None,
) -> ServerApp:
    """A ServerApp for ``config`` (or, when None, the config named by the run config at run time)."""
    app = ServerApp()

    @app.main()
    def main(grid: Grid, context: Context) -> None:
        cfg, root = resolve_run(context.run_config, config, run_dir)
        resumed = resume or bool(context.run_config.get("resume", False))
        if cfg.secure_aggregation.enabled:
            from .secure_aggregation import run_secure_federation  # it builds on this module

            run_secure_federation(grid, context, cfg, root, resume=resumed, on_round=on_round)
        else:
            run_federation(grid, cfg, root, resume=resumed, on_round=on_round)

    return app


app = make_server_app()
