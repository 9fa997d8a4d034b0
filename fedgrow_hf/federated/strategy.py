"""The server's aggregation: one of Flower's strategies over Global-LiGO arrays, behind the screen of
:mod:`.screening`.

:class:`ScreenedStrategy` is a Flower ``Strategy`` wrapper, like Flower's own DP wrappers: its
``aggregate_train`` screens every reply before the wrapped strategy (or Flower's DP wrapper, which clips
updates against the current state) touches it, so what reaches Flower is always a consistent set of
valid updates, clipped towards the round's median (:mod:`.clipping`), and checks the aggregate before anyone
checkpoints or sends it (:func:`aggregate_problem`).
Like Flower's strategies it answers ``(None, None)`` when a round cannot be aggregated; what was
dropped, and why, is in :attr:`ScreenedStrategy.last`.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

import torch
from flwr.app import ArrayRecord, ConfigRecord, Message, MetricRecord, RecordDict
from flwr.serverapp import Grid
from flwr.serverapp.strategy import (
    DifferentialPrivacyServerSideFixedClipping,
    FedAvg,
    FedMedian,
    FedTrimmedAvg,
    Strategy,
)

from ..experiment.config import FederationConfig
from ..tuners.ligo import GlobalStateError, check_state_dict
from .clipping import Clipped, clip_norms, clip_updates, median_state
from .screening import (
    ARRAYS_KEY,
    CONFIG_KEY,
    METRICS_KEY,
    WEIGHT_KEY,
    DroppedUpdate,
    ReplyScreen,
    ScreenedReplies,
)

# What a round's record says under "aggregate" when no common starting state let the server clip towards it.
MEDIAN_AGGREGATE = "coordinate-wise median of the replies, each clipped to the median norm (they start from different models)"


def aggregate_problem(state: dict[str, torch.Tensor], reference: dict[str, torch.Tensor]) -> str | None:
    """Why an aggregate must not be checkpointed or sent (keys, shapes, dtypes, non-finite values)."""
    try:
        check_state_dict(reference, state, "aggregate")
    except GlobalStateError as error:
        return str(error)
    return None


def server_step(current: dict[str, torch.Tensor], aggregate: dict[str, torch.Tensor],
                rate: float) -> dict[str, torch.Tensor]:
    """``current + rate x (aggregate - current)``, key by key, in ``aggregate``'s dtypes: the server's step along
    the round's aggregate update (FedOpt's server learning rate). Parties' updates that point different ways
    average to a shorter step than each party's own (``benchmarks/diagnostics/update_agreement.py``: about half
    under the paper's protocol), which a rate above 1 gives back; 1 returns ``aggregate`` unchanged."""
    if rate == 1:
        return aggregate
    return {key: torch.lerp(current[key].to(value.dtype), value, rate) for key, value in aggregate.items()}


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


@dataclass
class ScreenedRound:
    """What :meth:`ScreenedStrategy.aggregate_train` saw in its last call."""

    valid: list[Message] = field(default_factory=list)
    dropped: list[DroppedUpdate] = field(default_factory=list)
    problem: str | None = None  # why nothing was aggregated
    aggregate_rejected: bool = False  # there were enough valid replies, but their aggregate was not valid
    state: dict[str, torch.Tensor] | None = None  # the checked aggregate, as the returned arrays hold it
    clipped: dict[str, dict[str, float | int]] = field(default_factory=dict)  # party id -> what was clipped
    aggregate: str | None = None  # how the round was aggregated, where not by the configured aggregator


class ScreenedStrategy(Strategy):
    """``strategy`` behind ``screen``: only screened replies are aggregated, and only a valid aggregate
    is returned, cast to the reference's dtypes (Flower's DP noise comes back as float64).

    With ``clip_factor`` > 0 every screened update is clipped to ``clip_factor`` times the round's median
    distance and example count before the wrapped strategy sees it (:mod:`.clipping`; the reply's arrays
    and count are replaced in place, as Flower's DP wrapper clips them). ``current`` is the state a round's
    updates start from (the screen's norm bound and the clipping are measured from it); :meth:`configure_train`
    sets it from the arrays it sends, a caller that builds its own messages sets it. The new state is
    ``current`` plus ``server_learning_rate`` times the aggregate's step from it (:func:`server_step`).

    Where no such state exists (``current`` None: federated phase 2's first round, where each party starts
    from its own merged model, and the intermediate exchange), the robust aggregate is the replies'
    coordinate-wise median (:data:`MEDIAN_AGGREGATE`), not a clipped mean. There the honest replies are
    different models, not steps from one: their distance from the median is the size of the models
    themselves, so a reply clipped to it still moved the mean by a third of a model in the direction its
    party chose (measured: the grown model's norm 2.24x the no-attack run's after federated phase 2's
    first round, ``tests/federated/test_hostile_ratchet.py`` at 40 + 10 rounds). Each reply is first
    scaled down to ``clip_factor`` x the replies' median norm (a model's size, which the honest majority
    sets: without it the median took, coordinate by coordinate, the honest value on the side of a reply
    scaled 11-fold, 2.05x the no-attack norm), then each coordinate of the median lies between two honest
    values while honest parties are a majority.
    """

    def __init__(self, strategy: Strategy, screen: ReplyScreen, min_valid: int, clip_factor: float = 0.0,
                 server_learning_rate: float = 1.0) -> None:
        self.strategy = strategy
        self.screen = screen
        self.min_valid = min_valid
        self.clip_factor = clip_factor
        self.server_learning_rate = server_learning_rate
        self.current: dict[str, torch.Tensor] | None = None
        self.last = ScreenedRound()

    def configure_train(self, server_round: int, arrays: ArrayRecord, config: ConfigRecord, grid: Grid) -> Iterable[Message]:
        self.current = arrays.to_torch_state_dict() if self.screen.reference is not None else None
        self.screen.connected = set(grid.get_node_ids())
        return self.strategy.configure_train(server_round, arrays, config, grid)

    def aggregate_train(
        self, server_round: int, replies: Iterable[Message]
    ) -> tuple[ArrayRecord | None, MetricRecord | None]:
        screened = self.screen.screen_round(replies, self.current)
        valid = screened.valid
        self.last = ScreenedRound(valid, screened.dropped)
        if len(valid) < self.min_valid:
            self.last.problem = f"{len(valid)} valid updates < min_train_nodes={self.min_valid}"
            return None, None
        reference = self.screen.reference
        if reference is None:  # the replies carry metrics only (phase 2's local fine-tuning): nothing to average
            return None, None
        if self.clip_factor > 0 and self.current is None:
            states, clipped = clip_norms(screened.states, self.clip_factor)
            self._record_clipped(screened, clipped)
            arrays, metrics = ArrayRecord(median_state(states, lower=False)), None
            self.last.aggregate = MEDIAN_AGGREGATE
        else:
            if self.clip_factor > 0:
                self._clip(screened)
            arrays, metrics = self.strategy.aggregate_train(server_round, valid)
        if arrays is None:
            self.last.problem = f"{type(self.strategy).__name__} aggregated nothing"
            return None, None
        state = {key: value.to(reference[key].dtype) if key in reference else value
                 for key, value in arrays.to_torch_state_dict().items()}
        if self.current is not None and set(state) == set(self.current):
            state = server_step(self.current, state, self.server_learning_rate)
        problem = aggregate_problem(state, dict(reference))
        if problem is not None:
            self.last.problem, self.last.aggregate_rejected = problem, True
            return None, None
        self.last.state = state
        return ArrayRecord(state), metrics

    def _clip(self, screened: ScreenedReplies) -> None:
        """Clip the screened updates towards the round's centre and median count, in place; the round's
        record names each party clipped and by how much."""
        metrics = [dict(message.content[METRICS_KEY]) for message in screened.valid]
        weights = [int(m[WEIGHT_KEY]) for m in metrics] if self.screen.counts_examples else None
        states, clipped_weights, clipped = clip_updates(screened.states, weights, screened.centre, self.clip_factor)
        self._record_clipped(screened, clipped)
        for index, message in enumerate(screened.valid):
            if not clipped.record(index):
                continue
            if clipped_weights is not None:
                metrics[index][WEIGHT_KEY] = clipped_weights[index]
            message.content = RecordDict({ARRAYS_KEY: ArrayRecord(states[index]),
                                          METRICS_KEY: MetricRecord(metrics[index])})

    def _record_clipped(self, screened: ScreenedReplies, clipped: Clipped) -> None:
        """Name each party clipped in the round's record, with what it sent and the bound."""
        for index, message in enumerate(screened.valid):
            if record := clipped.record(index):
                self.last.clipped[str(self.screen.party_of(message))] = record

    def configure_evaluate(self, server_round: int, arrays: ArrayRecord, config: ConfigRecord, grid: Grid) -> Iterable[Message]:
        return self.strategy.configure_evaluate(server_round, arrays, config, grid)

    def aggregate_evaluate(self, server_round: int, replies: Iterable[Message]) -> MetricRecord | None:
        return self.strategy.aggregate_evaluate(server_round, replies)

    def summary(self) -> None:
        self.strategy.summary()
