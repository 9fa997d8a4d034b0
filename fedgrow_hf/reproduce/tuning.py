"""Picking the full-model learning rate, once for every method, on data no figure of the comparison uses.

``fedgrow reproduce PRESET --tune`` runs :func:`tune_finetune_learning_rate` before the methods: each
party's *training* share is split again (``DEV_FRACTION`` held out as a development split, seeded by the
config's ``data_seed``), own-source fine-tuning is run for its usual step budget at every rate of
``LEARNING_RATE_GRID`` on the rest, and the rate with the best mean development accuracy across parties
wins (ties: the smaller rate). A best rate at an edge of what was tried is not a choice but a sign that the
search stopped too soon (vision-small's first tuning picked its grid's largest rate), so the search then
steps on along ``LEARNING_RATE_LADDER`` in that direction until the best rate has a worse neighbour on both
sides or the ladder ends. Neither the parties' held-out shares nor the common test split are touched,
and the chosen rate is then used by every method (phase 2 of the growth methods, all of Fed-Scratch and
own-source), so no method is tuned for itself. Own-source is the tuning method because it is what a party
would tune on its own: no federation and no growth operator.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..federated.config import FederationConfig
from ..federated.task import party_datasets
from .methods import fine_tune_own_source

LEARNING_RATE_GRID = (3e-5, 1e-4, 3e-4)
LEARNING_RATE_LADDER = (1e-5, 3e-5, 1e-4, 3e-4, 1e-3, 3e-3)
DEV_FRACTION = 0.2
PROCEDURE = (f"own-source fine-tuning of every party for its full step budget on {1 - DEV_FRACTION:.0%} of its "
             f"training share, scored on the other {DEV_FRACTION:.0%} (a development split seeded by data_seed); "
             "the rate with the best mean development accuracy across parties (ties: the smaller rate), "
             f"starting from {', '.join(f'{rate:g}' for rate in LEARNING_RATE_GRID)} and stepping on along "
             f"{', '.join(f'{rate:g}' for rate in LEARNING_RATE_LADDER)} while the best rate is the largest or "
             "smallest one tried")


def tune_finetune_learning_rate(
    config: FederationConfig, work_dir: Path, grid: Sequence[float] = LEARNING_RATE_GRID,
    ladder: Sequence[float] = LEARNING_RATE_LADDER, log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Mean development accuracy of own-source fine-tuning at every rate of ``grid``, then at the next rung
    of ``ladder`` beyond whichever edge the best rate sits on, and the chosen rate (with ``config.seed``).
    Returns what ``results.json`` records as ``learning_rate_tuning``."""
    per_rate: dict[float, list[float]] = {}
    trying = list(grid)
    while trying:
        for rate in trying:
            per_rate[rate] = _dev_accuracies(config, rate, work_dir)
            log(f"{config.name}: full-model learning rate {rate:g}: mean development accuracy "
                f"{np.mean(per_rate[rate]):.4f}")
        means = {rate: float(np.mean(values)) for rate, values in sorted(per_rate.items())}
        trying = _beyond_edge(means, ladder)
    chosen = max(means, key=means.__getitem__)  # max keeps the first (smallest) of ties
    return {"grid": list(grid), "tried": list(means), "chosen": chosen, "seed": config.seed,
            "procedure": PROCEDURE, "dev_accuracy": {repr(rate): mean for rate, mean in means.items()},
            "dev_accuracy_per_party": {repr(rate): per_rate[rate] for rate in means}}


def _beyond_edge(means: dict[float, float], ladder: Sequence[float]) -> list[float]:
    """The ladder's next rate past the largest or smallest rate tried when that rate scores better than every
    other (a smallest rate that merely ties its neighbour is chosen, not stepped past), else none."""
    tried = sorted(means)
    best = max(means.values())
    if means[tried[-1]] == best and all(means[rate] < best for rate in tried[:-1]):
        return [rate for rate in sorted(ladder) if rate > tried[-1]][:1]
    if means[tried[0]] == best and all(means[rate] < best for rate in tried[1:]):
        return [rate for rate in sorted(ladder) if rate < tried[0]][-1:]
    return []


def _dev_accuracies(config: FederationConfig, rate: float, work_dir: Path) -> list[float]:
    """Every party's development accuracy after own-source fine-tuning at ``rate``."""
    trial = copy.deepcopy(config)
    trial.federation.finetune_learning_rate = rate
    return [_dev_accuracy(trial, party, work_dir / f"lr-{rate:g}" / f"party-{party}")
            for party in range(config.num_parties)]


def _dev_accuracy(config: FederationConfig, party: int, output_dir: Path) -> float:
    train, _ = party_datasets(config, party)
    split = train.train_test_split(test_size=DEV_FRACTION, seed=config.data_seed)
    records, _ = fine_tune_own_source(config, party, split["train"], split["test"], output_dir)
    return records[-1]["parties"][str(party)]["accuracy"]
