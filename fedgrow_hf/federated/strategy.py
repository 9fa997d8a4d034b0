"""The server's aggregation: Flower's FedAvg over Global-LiGO arrays, behind a validating screen.

Every update is checked before any strategy (or Flower's DP wrapper, which clips updates against
the current state) touches it: exact key set, a size bound on the raw bytes (checked before
deserialising anything), then shapes, dtypes and finite values with the same validator a party
uses when it loads a Global-LiGO (:func:`fedgrow_hf.tuners.ligo.validate_global_state`). A bad
update is dropped with a logged reason naming the party and the key; the others are aggregated.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass

import torch
from flwr.app import Array, ArrayRecord, Message
from flwr.serverapp.strategy import DifferentialPrivacyServerSideFixedClipping, FedAvg, Strategy

from ..tuners.ligo import GlobalStateError, GrowthStage, validate_global_state
from .config import FederationConfig

logger = logging.getLogger(__name__)

ARRAYS_KEY = "arrays"
METRICS_KEY = "metrics"
CONFIG_KEY = "config"
WEIGHT_KEY = "num-examples"
PARTY_KEY = "party"


def payload_bytes(record: ArrayRecord) -> int:
    """Bytes of the serialised arrays of ``record`` (what travels, without message framing)."""
    return sum(len(array.data) for array in record.values())


def to_array_record(state: dict[str, torch.Tensor]) -> ArrayRecord:
    return ArrayRecord({key: Array.from_torch_tensor(value) for key, value in state.items()})


def to_state_dict(record: ArrayRecord) -> dict[str, torch.Tensor]:
    return {key: torch.from_numpy(array.numpy().copy()) for key, array in record.items()}


@dataclass
class DroppedUpdate:
    node_id: int
    party: int | None
    reason: str


def reply_party(message: Message) -> int | None:
    """The party id a reply reports (None if it sent no usable metrics)."""
    if message.has_error() or METRICS_KEY not in message.content.metric_records:
        return None
    party = message.content.metric_records[METRICS_KEY].get(PARTY_KEY)
    return int(party) if isinstance(party, int | float) else None


def update_problem(content_arrays: ArrayRecord | None, reference: GrowthStage, max_bytes: int) -> str | None:
    """Why an update cannot be aggregated, naming the key; None if it is a valid Global-LiGO."""
    if content_arrays is None:
        return "no Global-LiGO arrays in the reply"
    expected = set(reference.state_dict())
    received = set(content_arrays.keys())
    if received != expected:
        return (
            f"keys differ from the Global-LiGO: unexpected {sorted(received - expected)[:5]}, "
            f"missing {sorted(expected - received)[:5]}"
        )
    size = payload_bytes(content_arrays)
    if size > max_bytes:
        return f"update is {size} bytes, more than the bound of {max_bytes}"
    try:
        state = {}
        for key, array in content_arrays.items():
            try:
                state[key] = torch.from_numpy(array.numpy().copy())
            except (TypeError, ValueError) as error:
                return f"key {key!r} is not a readable array: {error}"
        validate_global_state(reference, state)
    except GlobalStateError as error:
        return str(error)
    return None


def screen_replies(
    replies: Iterable[Message], reference: GrowthStage, max_bytes: int, parties: dict[int, int] | None = None
) -> tuple[list[Message], list[DroppedUpdate]]:
    """Split replies into valid Global-LiGO updates and dropped ones (errors, bad arrays, no weight).

    ``parties`` (node id -> party id, updated from every reply that names its party) lets a reply
    without content -- a crashed party -- still be reported by party.
    """
    parties = {} if parties is None else parties
    valid, dropped = [], []
    for message in replies:
        node, party = message.metadata.src_node_id, reply_party(message)
        if party is not None:
            parties[node] = party
        party = parties.get(node)
        if message.has_error():
            reason = f"party failed: {message.error.reason}"
        elif party is None or WEIGHT_KEY not in message.content.metric_records[METRICS_KEY]:
            reason = f"reply lacks the metrics {PARTY_KEY!r} and {WEIGHT_KEY!r}"
        else:
            reason = update_problem(message.content.array_records.get(ARRAYS_KEY), reference, max_bytes)
        if reason is None:
            valid.append(message)
        else:
            logger.warning("dropping the update of party %s (node %s): %s", party, node, reason)
            dropped.append(DroppedUpdate(node, party, reason))
    return valid, dropped


def build_strategy(config: FederationConfig, min_train_nodes: int | None = None) -> Strategy:
    """FedAvg weighted by each party's example count; wrapped in Flower's DP clipping if configured."""
    fed = config.federation
    strategy: Strategy = FedAvg(
        fraction_train=1.0,
        fraction_evaluate=0.0,
        min_train_nodes=min_train_nodes or config.num_parties,
        min_available_nodes=config.num_parties,
        weighted_by_key=WEIGHT_KEY,
        arrayrecord_key=ARRAYS_KEY,
        configrecord_key=CONFIG_KEY,
    )
    if fed.dp_noise_multiplier > 0:
        strategy = DifferentialPrivacyServerSideFixedClipping(
            strategy,
            noise_multiplier=fed.dp_noise_multiplier,
            clipping_norm=fed.dp_clipping_norm,
            num_sampled_clients=config.num_parties,
        )
    return strategy
