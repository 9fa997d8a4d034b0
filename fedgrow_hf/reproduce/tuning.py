"""Picking the full-model learning rate, once for every method, on data no figure of the comparison uses.

``fedgrow reproduce PRESET --tune`` runs :func:`tune_finetune_learning_rate` before the methods: each
party's *training* share is split again (``DEV_FRACTION`` held out as a development split, seeded by the
config's ``data_seed``), own-source fine-tuning is run for its usual step budget at every rate of
``LEARNING_RATE_GRID`` on the rest, and the rate with the best mean development accuracy across parties
wins (ties: the smaller rate). Neither the parties' held-out shares nor the common test split are touched,
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
DEV_FRACTION = 0.2
PROCEDURE = (f"own-source fine-tuning of every party for its full step budget on {1 - DEV_FRACTION:.0%} of its "
             f"training share, scored on the other {DEV_FRACTION:.0%} (a development split seeded by data_seed); "
             "the rate with the best mean development accuracy across parties (ties: the smaller rate)")


def tune_finetune_learning_rate(
    config: FederationConfig, work_dir: Path, grid: Sequence[float] = LEARNING_RATE_GRID,
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Mean development accuracy of own-source fine-tuning at every rate of ``grid``, and the chosen rate
    (with ``config.seed``). Returns what ``results.json`` records as ``learning_rate_tuning``."""
    per_rate: dict[str, list[float]] = {}
    for rate in grid:
        trial = copy.deepcopy(config)
        trial.federation.finetune_learning_rate = rate
        per_rate[repr(rate)] = [_dev_accuracy(trial, party, work_dir / f"lr-{rate:g}" / f"party-{party}")
                                for party in range(config.num_parties)]
        log(f"{config.name}: full-model learning rate {rate:g}: mean development accuracy "
            f"{np.mean(per_rate[repr(rate)]):.4f}")
    means = {rate: float(np.mean(values)) for rate, values in per_rate.items()}
    chosen = max(sorted(grid), key=lambda rate: means[repr(rate)])  # max keeps the first (smallest) of ties
    return {"grid": list(grid), "chosen": chosen, "seed": config.seed, "procedure": PROCEDURE,
            "dev_accuracy": means, "dev_accuracy_per_party": per_rate}


def _dev_accuracy(config: FederationConfig, party: int, output_dir: Path) -> float:
    train, _ = party_datasets(config, party)
    split = train.train_test_split(test_size=DEV_FRACTION, seed=config.data_seed)
    records, _ = fine_tune_own_source(config, party, split["train"], split["test"], output_dir)
    return records[-1]["parties"][str(party)]["accuracy"]
