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
from flwr.serverapp.strategy import FedAvg, Strategy
from safetensors.torch import save_file

from ..tuners.ligo import GrowthStage
from .checkpoint import (
    ServerCheckpoint,
    load_checkpoint,
    numpy_rng_state,
    save_checkpoint,
    set_numpy_rng_state,
)
from .config import FederationConfig, resolve_run
from .strategy import (
    ARRAYS_KEY,
    CONFIG_KEY,
    METRICS_KEY,
    WEIGHT_KEY,
    build_strategy,
    payload_bytes,
    reply_party,
    screen_replies,
    to_array_record,
    to_state_dict,
)
from .task import reference_global_stage

logger = logging.getLogger(__name__)

METRICS_FILE = "metrics.jsonl"
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
    checkpoint = load_checkpoint(run_dir)
    if checkpoint is not None and not resume:
        raise FileExistsError(f"{run_dir} holds a checkpoint of an earlier run: resume it or use a new run folder")
    if checkpoint is None:
        (run_dir / METRICS_FILE).unlink(missing_ok=True)
        (run_dir / "config.json").write_text(json.dumps(config.to_dict(), indent=2))
        np.random.seed(config.seed)
    else:
        set_numpy_rng_state(checkpoint.strategy_state["numpy_rng"])
        logger.info("resuming %s after round %d", run_dir, checkpoint.round)

    reference = reference_global_stage(config)
    arrays = to_array_record(checkpoint.global_state if checkpoint else reference.state_dict())
    max_bytes = config.federation.max_update_bytes or payload_bytes(to_array_record(reference.state_dict()))
    strategy = build_strategy(config)
    parties: dict[int, int] = {}  # node id -> party id, as the parties report it
    for server_round in range((checkpoint.round + 1) if checkpoint else 1, config.federation.rounds + 1):
        arrays, report = _operator_round(
            grid, config, strategy, reference, arrays, server_round, max_bytes, parties
        )
        record_round(run_dir, report, on_round)
        strategy_state = {"numpy_rng": numpy_rng_state()}
        save_checkpoint(run_dir, ServerCheckpoint(server_round, to_state_dict(arrays), strategy_state))

    final = to_state_dict(arrays)
    save_file(final, str(run_dir / FINAL_OPERATOR), metadata={"format": "pt", "fedgrow": "global-ligo"})
    if config.federation.phase2 != "none":
        run_phase2(grid, config, run_dir, arrays, on_round)
    return final


def _operator_round(
    grid: Grid,
    config: FederationConfig,
    strategy: Strategy,
    reference: GrowthStage,
    arrays: ArrayRecord,
    server_round: int,
    max_bytes: int,
    parties: dict[int, int],
) -> tuple[ArrayRecord, dict[str, Any]]:
    fed = config.federation
    started = time.monotonic()
    all_dropped: list[dict[str, Any]] = []
    for attempt in range(1, fed.round_retries + 2):
        train_config = ConfigRecord({"local-steps": fed.local_steps, "attempt": attempt})
        messages = list(strategy.configure_train(server_round, arrays, train_config, grid))
        replies = list(grid.send_and_receive(messages, timeout=fed.round_timeout))
        valid, dropped = screen_replies(replies, reference, max_bytes, parties)
        silent = len(messages) - len(replies)
        all_dropped += [{"attempt": attempt, "party": d.party, "node": d.node_id, "reason": d.reason} for d in dropped]
        if len(valid) >= fed.min_train_nodes:
            break
        logger.warning(
            "round %d attempt %d: %d valid updates (%d dropped, %d without reply) < min_train_nodes=%d",
            server_round, attempt, len(valid), len(dropped), silent, fed.min_train_nodes,
        )
    else:
        raise FederationAborted(
            f"round {server_round}: fewer than min_train_nodes={fed.min_train_nodes} valid updates after "
            f"{fed.round_retries + 1} attempts; the checkpoint of round {server_round - 1} is intact"
        )
    aggregated, _ = strategy.aggregate_train(server_round, valid)
    # Flower's DP noise comes back as float64: the Global-LiGO keeps the reference dtypes
    reference_state = reference.state_dict()
    new_state = {key: value.to(reference_state[key].dtype) for key, value in to_state_dict(aggregated).items()}
    down = payload_bytes(arrays)
    parties = {
        str(reply_party(message)): {
            **dict(message.content[METRICS_KEY]),
            "bytes_up": payload_bytes(message.content[ARRAYS_KEY]),
            "bytes_down": down,
        }
        for message in valid
    }
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
    return to_array_record(new_state), report


def run_phase2(
    grid: Grid, config: FederationConfig, run_dir: Path, arrays: ArrayRecord, on_round: RoundCallback | None
) -> None:
    """Phase 2: local fine-tuning of every party's merged model, or FedAvg of the merged models."""
    fed = config.federation
    federated = fed.phase2 == "federated"
    averager = FedAvg(min_available_nodes=config.num_parties, weighted_by_key=WEIGHT_KEY, arrayrecord_key=ARRAYS_KEY)
    _wait_for_nodes(grid, config.num_parties, fed.round_timeout)  # with rounds = 0, phase 2 comes first
    for finetune_round in range(1, (fed.finetune_rounds if federated else 1) + 1):
        started = time.monotonic()
        settings = ConfigRecord({"mode": fed.phase2, "finetune-round": finetune_round, "init": fed.finetune_init})
        messages = [
            Message(RecordDict({ARRAYS_KEY: arrays, CONFIG_KEY: settings}), dst_node_id=node, message_type=FINETUNE_MESSAGE)
            for node in grid.get_node_ids()
        ]
        replies = [m for m in grid.send_and_receive(messages, timeout=fed.round_timeout) if not m.has_error()]
        if not replies:
            raise FederationAborted(f"phase 2 round {finetune_round}: no party replied")
        down = payload_bytes(arrays)
        parties = {
            str(reply_party(m)): {
                **dict(m.content[METRICS_KEY]),
                "bytes_up": payload_bytes(m.content[ARRAYS_KEY]) if ARRAYS_KEY in m.content.array_records else 0,
                "bytes_down": down,
            }
            for m in replies
        }
        if federated:
            arrays, _ = averager.aggregate_train(finetune_round, replies)
        report = {
            "phase": f"finetune-{fed.phase2}",
            "round": finetune_round,
            **weighted_means(parties, ("train_loss", "eval_loss", "accuracy")),
            "parties": parties,
            "seconds": round(time.monotonic() - started, 3),
        }
        report["loss"] = report["eval_loss"]
        record_round(run_dir, report, on_round)
    if federated:
        save_file(to_state_dict(arrays), str(run_dir / "grown_model_fedavg.safetensors"))


def _wait_for_nodes(grid: Grid, count: int, timeout: float) -> None:
    """Wait until ``count`` parties are connected (what a strategy's ``min_available_nodes`` does)."""
    deadline = time.monotonic() + timeout
    while len(list(grid.get_node_ids())) < count and time.monotonic() < deadline:
        time.sleep(0.5)


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
