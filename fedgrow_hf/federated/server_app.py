"""The Fed-Grow server as a Flower ``ServerApp`` (Message API + ``Grid``).

Phase 1 runs ``rounds`` rounds of federated Global-LiGO training: the current Global-LiGO goes to
every party, and the configured Flower strategy (optionally inside Flower's DP fixed-clipping wrapper),
behind the reply screen (:class:`.strategy.ScreenedStrategy`), aggregates the valid replies. A
round with fewer than ``min_train_nodes`` valid updates, or an invalid aggregate, is run again up to
``round_retries`` times, then the federation stops cleanly with :class:`FederationAborted` (the last
checkpoint stays valid). After every round the server checkpoints durably and appends a line to
``metrics.jsonl``. Phase 2 and what both phase-1 paths share live in :mod:`.phases`; the SecAgg+ path
in :mod:`.secure_aggregation`.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from flwr.app import ArrayRecord, ConfigRecord, Context
from flwr.serverapp import Grid, ServerApp
from safetensors.torch import save_file

from ..experiment.config import FederationConfig
from ..experiment.parties import reference_shared_state
from .checkpoint import (
    CheckpointError,
    ServerCheckpoint,
    load_checkpoint,
    numpy_rng_state,
    party_bindings,
    save_checkpoint,
    set_numpy_rng_state,
)
from .intermediate import shared_intermediate, with_shared_intermediate
from .phases import (
    FINAL_OPERATOR,
    METRICS_FILE,
    FederationAborted,
    RoundCallback,
    check_checkpoint_run,
    checkpoint_identity,
    dropped_records,
    party_reports,
    record_round,
    run_phase2,
    screen_bindings,
    start_run,
    wait_for_nodes,
    weighted_means,
)
from .records import truncate_records
from .run_config import resolve_run
from .screening import (
    INTERMEDIATE_KEY,
    OPERATOR_METRICS,
    ReplyScreen,
    payload_bytes,
)
from .secure_aggregation import run_secure_federation
from .strategy import ScreenedStrategy, aggregate_problem, build_strategy

logger = logging.getLogger(__name__)

def run_federation(
    grid: Grid,
    config: FederationConfig,
    run_dir: str | Path,
    *,
    resume: bool = False,
    on_round: RoundCallback | None = None,
) -> dict[str, torch.Tensor]:
    """Run both phases of Fed-Grow; returns the final Global-LiGO (with ``share_head``, and the task head), also
    saved in ``run_dir``."""
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    reference = reference_shared_state(config)
    checkpoint = load_checkpoint(run_dir)
    if checkpoint is not None and not resume:
        raise FileExistsError(f"{run_dir} holds a checkpoint of an earlier run: resume it or use a new run folder")
    if checkpoint is None:
        start_run(run_dir, config)
        np.random.seed(config.seed)
    else:
        check_resumable(run_dir, config, checkpoint, reference)
        set_numpy_rng_state(checkpoint.strategy_state.get("numpy_rng"))
        done = checkpoint.round  # a record beyond it (killed between the append and the checkpoint) is cut
        truncate_records(run_dir / METRICS_FILE, lambda r: r.get("phase") != "operator" or r.get("round", 0) <= done)
        logger.info("resuming %s after round %d", run_dir, checkpoint.round)

    state = checkpoint.global_state if checkpoint else reference
    max_bytes = config.federation.max_update_bytes or payload_bytes(ArrayRecord(reference))
    screen = ReplyScreen(reference, OPERATOR_METRICS, config.num_parties, max_bytes,
                         config.federation.max_num_examples, config.federation.update_norm_bound,
                         parties=party_bindings(checkpoint.strategy_state) if checkpoint else {})
    strategy = ScreenedStrategy(build_strategy(config), screen, config.federation.min_train_nodes,
                                config.federation.update_clip_factor, config.federation.server_learning_rate)
    identity = checkpoint_identity(run_dir, config)
    for server_round in range((checkpoint.round + 1) if checkpoint else 1, config.federation.rounds + 1):
        shared = None
        if config.federation.share_intermediate and server_round == 2:
            shared = shared_intermediate(grid, config, run_dir, screen.parties, on_round)
        state, report = _operator_round(grid, config, strategy, state, server_round, shared)
        record_round(run_dir, report, on_round)
        strategy_state = {"numpy_rng": numpy_rng_state(), "parties": screen_bindings(screen)}
        save_checkpoint(run_dir, ServerCheckpoint(server_round, state, strategy_state, run=identity))

    save_file(state, str(run_dir / FINAL_OPERATOR), metadata={"format": "pt", "fedgrow": "global-ligo"})
    if config.federation.phase2 != "none":
        run_phase2(grid, config, run_dir, ArrayRecord(state), on_round, resume=resume, bindings=screen.parties)
    return state


def check_resumable(
    run_dir: Path, config: FederationConfig, checkpoint: ServerCheckpoint, reference: dict[str, torch.Tensor]
) -> None:
    """Refuse to resume a run with another config, or from a checkpoint that is not a valid state of it."""
    check_checkpoint_run(checkpoint, run_dir, config)
    problem = aggregate_problem(checkpoint.global_state, reference)
    if problem:
        raise CheckpointError(f"the checkpoint of round {checkpoint.round} in {run_dir} is not valid: {problem}")


def _operator_round(
    grid: Grid,
    config: FederationConfig,
    strategy: ScreenedStrategy,
    state: dict[str, torch.Tensor],
    server_round: int,
    shared: dict[str, torch.Tensor] | None = None,
) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """One phase-1 round: send ``state`` (and ``shared``, the averaged intermediate, when given), aggregate the
    screened replies; run again (up to ``round_retries`` times) while fewer than ``min_train_nodes`` updates
    are valid or their aggregate is not.

    The retries, the checkpoint after every round and resuming from it are why this loop is the server's
    own rather than Flower's ``Strategy.start``, which has none of them."""
    fed = config.federation
    started, cpu_started = time.monotonic(), time.process_time()
    arrays = ArrayRecord(state)
    all_dropped: list[dict[str, Any]] = []
    for attempt in range(1, fed.round_retries + 2):
        wait_for_nodes(grid, config, f"round {server_round}")
        train_config = ConfigRecord({"local-steps": fed.local_steps, "attempt": attempt})
        messages = list(strategy.configure_train(server_round, arrays, train_config, grid))
        extra_down = with_shared_intermediate(messages, shared, INTERMEDIATE_KEY) if shared is not None else 0
        replies = list(grid.send_and_receive(messages, timeout=fed.round_timeout))
        aggregated, _ = strategy.aggregate_train(server_round, replies)
        screened = strategy.last
        silent = len(messages) - len(replies)
        all_dropped += dropped_records(screened.dropped, attempt)
        if aggregated is not None:
            break
        if screened.aggregate_rejected:
            all_dropped.append({"attempt": attempt, "party": None, "node": None, "reason": screened.problem})
        logger.warning("round %d attempt %d: %s (%d dropped, %d without reply)",
                       server_round, attempt, screened.problem, len(screened.dropped), silent)
    else:
        raise FederationAborted(
            f"round {server_round}: fewer than min_train_nodes={fed.min_train_nodes} valid updates (or no valid "
            f"aggregate of them) after {fed.round_retries + 1} attempts; the checkpoint of round {server_round - 1} is intact"
        )
    parties = party_reports(strategy.screen, screened.valid, payload_bytes(arrays) + extra_down)
    report = {
        "phase": "operator",
        "round": server_round,
        "attempts": attempt,
        **weighted_means(parties, ("train_loss", "eval_loss_before", "eval_loss", "accuracy")),
        "parties": parties,
        "dropped": all_dropped,
        "clipped": screened.clipped,
        "no_reply": silent,
        "seconds": round(time.monotonic() - started, 3),
        # this process's: with the in-process engine the parties' training too, so a resumed run can add it
        "cpu_seconds": round(time.process_time() - cpu_started, 3),
    }
    report["loss"] = report["eval_loss"]
    return screened.state, report


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
            run_secure_federation(grid, context, cfg, root, resume=resumed, on_round=on_round)
        else:
            run_federation(grid, cfg, root, resume=resumed, on_round=on_round)

    return app


app = make_server_app()
