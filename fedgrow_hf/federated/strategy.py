"""The server's aggregation: one of Flower's strategies over Global-LiGO arrays, behind the screen of
:mod:`.screening`.

Every reply is screened before any strategy (or Flower's DP wrapper, which clips updates against the
current state) touches it, so what reaches Flower is always a consistent set of valid updates. The
aggregate itself is checked again before the server checkpoints or sends it (:func:`aggregate_problem`).
"""

from __future__ import annotations

import torch
from flwr.serverapp.strategy import (
    DifferentialPrivacyServerSideFixedClipping,
    FedAvg,
    FedMedian,
    FedTrimmedAvg,
    Strategy,
)

from ..tuners.ligo import GlobalStateError, check_state_dict
from .config import FederationConfig
from .screening import ARRAYS_KEY, CONFIG_KEY, WEIGHT_KEY


def aggregate_problem(state: dict[str, torch.Tensor], reference: dict[str, torch.Tensor]) -> str | None:
    """Why an aggregate must not be checkpointed or sent (keys, shapes, dtypes, non-finite values)."""
    try:
        check_state_dict(reference, state, "aggregate")
    except GlobalStateError as error:
        return str(error)
    return None


def build_strategy(config: FederationConfig, min_train_nodes: int | None = None, *, with_dp: bool = True) -> Strategy:
    """``[federation].aggregator`` over the screened replies (FedAvg weighted by each party's example
    count; FedMedian or FedTrimmedAvg to bound what a few parties can do to the result), wrapped in
    Flower's DP clipping if configured (and ``with_dp``: DP covers the Global-LiGO of phase 1, not the
    grown models of a federated phase 2). The server waits for nodes itself (bounded by ``round_timeout``),
    so the strategy only needs ``min_train_nodes`` of them."""
    fed = config.federation
    needed = min_train_nodes or fed.min_train_nodes
    common = {"fraction_train": 1.0, "fraction_evaluate": 0.0, "min_train_nodes": needed,
              "min_available_nodes": needed, "weighted_by_key": WEIGHT_KEY, "arrayrecord_key": ARRAYS_KEY,
              "configrecord_key": CONFIG_KEY}
    strategy: Strategy
    if fed.aggregator == "fedmedian":
        strategy = FedMedian(**common)
    elif fed.aggregator == "fedtrimmedavg":
        strategy = FedTrimmedAvg(**common, beta=fed.trim_fraction)
    else:
        strategy = FedAvg(**common)
    if with_dp and fed.dp_noise_multiplier > 0:
        strategy = DifferentialPrivacyServerSideFixedClipping(
            strategy,
            noise_multiplier=fed.dp_noise_multiplier,
            clipping_norm=fed.dp_clipping_norm,
            num_sampled_clients=config.num_parties,
        )
    return strategy
