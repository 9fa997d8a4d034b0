"""A bound on every update that a hostile party cannot move: median-referenced clipping.

Why not a bound relative to the current global state alone (``update_norm_bound x max(1, |current|)``): a
party that sends an update just inside it moves the average, and so the next round's bound, by a fixed
factor; round after round the global state grows geometrically (24 -> 5e38 in ~35 rounds) without one
reply being dropped. What the attacker controls must not set the reference. Here the reference is the
round's *lower median* over the screened replies -- of their distances from the state they started from,
and of their example counts -- as in norm clipping (Sun et al. 2019) and adaptive clipping (Andrew et al.
2021), with the quantile taken from the round itself:

* each update's distance from the centre is clipped to ``factor x`` the median distance (the update is
  scaled towards the centre, not dropped, so an honest party with an unusually large step still counts);
* each example count is capped at ``factor x`` the median count (otherwise one reply claiming
  ``max_num_examples`` owns a weighted average however short its step).

While honest parties are a majority of the valid replies, the lower median lies between two honest values,
so one round moves the average by at most about ``factor x`` an honest step in any direction the attacker
chooses: growth is additive in the honest step size, never multiplicative in the state.

The centre is the state the updates started from; where the server does not know it (federated phase 2's
first round: each party starts from its own merged grown model) it is the coordinate-wise median of the
replies, which no single party can move far either.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import torch

State = Mapping[str, torch.Tensor]


def lower_median(values: Sequence[float]) -> float:
    """The lower median: an element of ``values`` (within the honest values while they are a majority)."""
    ordered = sorted(values)
    return ordered[(len(ordered) - 1) // 2]


def state_distance(state: State, other: State) -> float:
    """The L2 distance between two state dicts with the same keys (in float64, so 1e30s do not overflow)."""
    return math.sqrt(sum(float((state[k].double() - other[k].double()).square().sum()) for k in state))


def state_norm(state: State) -> float:
    return math.sqrt(sum(float(value.double().square().sum()) for value in state.values()))


def median_state(states: Sequence[State], lower: bool = True) -> dict[str, torch.Tensor]:
    """The coordinate-wise median of ``states``: a centre no single party can move far. ``lower``: of an even
    number, the lower middle value (an element of the coordinate's values); otherwise the mean of the two
    middle values, so that two replies give their mean rather than their element-wise minimum."""
    median = {}
    for key in states[0]:
        ordered = torch.stack([state[key] for state in states]).sort(dim=0).values
        middle = (len(states) - 1) // 2
        if lower or len(states) % 2 or not ordered.is_floating_point():
            median[key] = ordered[middle]
        else:
            median[key] = (ordered[middle] + ordered[middle + 1]) / 2
    return median


@dataclass(frozen=True)
class Clipped:
    """One round's clipping: the bounds it used and, per reply, what it did (for the round's record)."""

    distance_bound: float
    weight_bound: int | None
    distances: tuple[float, ...]
    weights: tuple[int, ...] | None

    def record(self, index: int) -> dict[str, float | int]:
        """What was clipped of reply ``index`` (empty when nothing was)."""
        clipped: dict[str, float | int] = {}
        if self.distances[index] > self.distance_bound:
            clipped["distance"], clipped["distance_bound"] = self.distances[index], self.distance_bound
        if self.weights is not None and self.weight_bound is not None and self.weights[index] > self.weight_bound:
            clipped["num_examples"], clipped["num_examples_bound"] = self.weights[index], self.weight_bound
        return clipped


def clip_updates(
    states: Sequence[State], weights: Sequence[int] | None, centre: State, factor: float
) -> tuple[list[dict[str, torch.Tensor]], list[int] | None, Clipped]:
    """``states`` with their distance from ``centre`` clipped to ``factor x`` the round's median distance,
    and ``weights`` (None: the replies carry no example counts) capped at ``factor x`` their median."""
    distances = [state_distance(state, centre) for state in states]
    bound = factor * lower_median(distances)
    clipped_states = [_towards(state, centre, bound / distance) if distance > bound else dict(state)
                      for state, distance in zip(states, distances, strict=True)]
    weight_bound = None if weights is None else max(1, math.floor(factor * lower_median(weights)))
    clipped_weights = None if weights is None else [min(weight, weight_bound) for weight in weights]
    report = Clipped(bound, weight_bound, tuple(distances), None if weights is None else tuple(weights))
    return clipped_states, clipped_weights, report


def clip_norms(states: Sequence[State], factor: float) -> tuple[list[dict[str, torch.Tensor]], Clipped]:
    """``states`` whose floating-point tensors are scaled down so that each state's norm is at most ``factor
    x`` the round's lower median norm: for replies that are models rather than steps from one state, where a
    model's size is what the honest majority sets (integer tensors, such as position ids, are left alone)."""
    norms = [state_norm({key: value for key, value in state.items() if value.is_floating_point()}) for state in states]
    bound = factor * lower_median(norms)
    clipped = [{key: (value.double() * (bound / norm)).to(value.dtype) if value.is_floating_point() else value
                for key, value in state.items()} if norm > bound else dict(state)
               for state, norm in zip(states, norms, strict=True)]
    return clipped, Clipped(bound, None, tuple(norms), None)


def _towards(state: State, centre: State, scale: float) -> dict[str, torch.Tensor]:
    """``centre + scale x (state - centre)``, computed in float64 and cast back to each tensor's dtype."""
    return {key: (centre[key].double() + scale * (value.double() - centre[key].double())).to(value.dtype)
            for key, value in state.items()}
