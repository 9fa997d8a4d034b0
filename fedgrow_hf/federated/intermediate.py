"""The one exchange of the ``share_intermediate`` variant: every party's grown intermediate model, averaged.

The Fed-Grow authors' code averages each party's whole state dict after round 1, and that state dict then
holds the party's grown intermediate model (its Local-LiGO applied to its source): every party afterwards
trains the Global-LiGO over that one averaged intermediate. The paper says no model is shared; this
variant does share one, once, so that what strict Fed-Grow (only the Global-LiGO ever leaves a party)
costs can be measured against it. The replies go through the same screen as every other (keys, shapes,
finite values, size, example count, the node's party binding); with clipping on (``update_clip_factor``)
each is clipped to the replies' median norm and the aggregate is their coordinate-wise median, as in
federated phase 2's first round (the intermediates are different models, not steps from one state), otherwise
the example-weighted mean as in the authors' code; it is kept durably in the run folder, so a resumed server
sends the same one. The file carries the exchange's record as metadata: a server killed after writing it but before
appending the record appends it on resume, so the record is there exactly once.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import torch
from flwr.app import ArrayRecord, ConfigRecord, Message, RecordDict
from flwr.serverapp import Grid
from safetensors import safe_open
from safetensors.torch import save_file

from ..experiment.config import FederationConfig
from ..experiment.parties import reference_intermediate_state
from .disk import durable_write
from .phases import (
    METRICS_FILE,
    FederationAborted,
    RoundCallback,
    dropped_records,
    party_reports,
    record_round,
    state_bytes,
    wait_for_nodes,
)
from .records import read_records
from .screening import CONFIG_KEY, ReplyScreen, payload_bytes
from .strategy import ScreenedStrategy, build_strategy

INTERMEDIATE_MESSAGE = "train.intermediate"
SHARED_INTERMEDIATE_FILE = "shared_intermediate.safetensors"
RECORD_KEY = "fedgrow_record"  # the file's metadata entry holding the exchange's record


def shared_intermediate(
    grid: Grid, config: FederationConfig, run_dir: Path, bindings: dict[int, int], on_round: RoundCallback | None
) -> dict[str, torch.Tensor]:
    """The averaged intermediate: asked of every party once (after round 1) or, when a resumed server asked
    before, read back from the run folder. ``bindings`` (node -> party) are the federation's own, so a node
    keeps the party it claimed in phase 1."""
    kept = run_dir / SHARED_INTERMEDIATE_FILE
    if kept.is_file():
        return _kept_average(kept, run_dir, on_round)
    fed = config.federation
    started = time.monotonic()
    reference = reference_intermediate_state(config)
    screen = ReplyScreen(reference, (), config.num_parties, state_bytes(reference), fed.max_num_examples, parties=bindings)
    averager = ScreenedStrategy(build_strategy(config, with_dp=False), screen, fed.min_train_nodes,
                                fed.update_clip_factor)
    nodes = wait_for_nodes(grid, config, "the intermediate exchange")
    messages = [Message(RecordDict({CONFIG_KEY: ConfigRecord({"server-round": 1})}), dst_node_id=node,
                        message_type=INTERMEDIATE_MESSAGE) for node in nodes]
    replies = list(grid.send_and_receive(messages, timeout=fed.round_timeout))
    averager.aggregate_train(1, replies)
    if averager.last.state is None:
        raise FederationAborted(f"the intermediate exchange: {averager.last.problem}")
    report: dict[str, Any] = {
        "phase": "intermediate",
        "round": 1,
        "parties": party_reports(screen, averager.last.valid, 0),
        "dropped": dropped_records(averager.last.dropped, attempt=1),
        **({"aggregate": averager.last.aggregate} if averager.last.aggregate else {}),
        "no_reply": len(messages) - len(replies),
        "seconds": round(time.monotonic() - started, 3),
    }
    state = {key: value.contiguous() for key, value in averager.last.state.items()}
    durable_write(kept, lambda tmp: save_file(state, str(tmp), metadata={RECORD_KEY: json.dumps(report)}))
    record_round(run_dir, report, on_round)
    return state


def _kept_average(kept: Path, run_dir: Path, on_round: RoundCallback | None) -> dict[str, torch.Tensor]:
    """The average an earlier run of this server asked for; its record appended if the run stopped before."""
    with safe_open(str(kept), framework="pt") as handle:
        report = json.loads(handle.metadata()[RECORD_KEY])
        state = {key: handle.get_tensor(key) for key in handle.keys()}
    if not any(record.get("phase") == "intermediate" for record in read_records(run_dir / METRICS_FILE)):
        record_round(run_dir, report, on_round)
    return state


def with_shared_intermediate(messages: list[Message], shared: dict[str, torch.Tensor], key: str) -> int:
    """Add the averaged intermediate to every message (round 2's); returns the bytes it adds to each."""
    record = ArrayRecord(shared)
    for message in messages:
        message.content[key] = record
    return payload_bytes(record)
