"""Picking the full-model learning rates on data no figure of the comparison uses.

``fedgrow reproduce PRESET --tune`` runs the searches of :func:`searches_for` before the methods: each party's
*training* share is split again (``DEV_FRACTION`` held out as a development split, seeded by the config's
``data_seed``), a method is run for its usual step budget at every rate of ``LEARNING_RATE_GRID`` on the
rest, and the rate with the best mean development accuracy across parties wins (ties: the smaller rate).
A best rate at an edge of what was tried is not a choice but a sign that the search stopped too soon, so the
search then steps on along ``LEARNING_RATE_LADDER`` in that direction until the best rate has a worse
neighbour on both sides or the ladder ends.

Two rates are searched because two shapes of model are trained, and the best rate depends on the shape:
- the **target's** rate (``finetune_learning_rate``: phase 2 of every growth method and all of
  Fed-Scratch, every method that trains the target's shape) is chosen with independent growth, the
  growth recipe without the federation;
- the **source's** rate (own-source fine-tuning, the only method that trains the sources' shapes) is
  chosen with own-source fine-tuning, so the user's alternative is measured at its own best rate.
Neither the parties' held-out shares nor the common test split are touched, and no method is tuned for
itself beyond the shape of model it trains.

A search reads only each run's final development accuracy, so its runs evaluate only at the end
(evaluating along the way changes nothing in training; ``benchmarks/bench_tuning.py`` measures its time),
and a search runs only when a method that trains at its rate is run. What made the search what it is, as
measured: docs/reproduction.md, "Learning-rate search".
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import datasets
import numpy as np

from ..experiment.config import FederationConfig
from ..experiment.data import party_datasets
from ..experiment.parties import load_source
from .methods import OWN_SOURCE, fine_tune_own_source, grow_and_train_alone

LEARNING_RATE_GRID = (3e-5, 1e-4, 3e-4)
LEARNING_RATE_LADDER = (1e-5, 3e-5, 1e-4, 3e-4, 1e-3, 3e-3, 1e-2, 3e-2)
DEV_FRACTION = 0.2
_SEARCH = (f"for its full step budget on {1 - DEV_FRACTION:.0%} of every party's training share, scored on the "
           f"other {DEV_FRACTION:.0%} (a development split seeded by data_seed); the rate with the best mean "
           f"development accuracy across parties (ties: the smaller rate), starting from "
           f"{', '.join(f'{rate:g}' for rate in LEARNING_RATE_GRID)} and stepping on along "
           f"{', '.join(f'{rate:g}' for rate in LEARNING_RATE_LADDER)} while the best rate is the largest or "
           "smallest one tried")
PROCEDURE = "independent growth (the target's shape: every method but own-source) " + _SEARCH
OWN_SOURCE_PROCEDURE = "own-source fine-tuning (the sources' shapes: own-source only) " + _SEARCH

DevScorer = Callable[[FederationConfig, int, datasets.Dataset, datasets.Dataset, Path], float]
TARGET, SOURCES = "target", "own-source"  # the two searches: the target's shape, the sources' shapes


def searches_for(methods: Sequence[str]) -> list[str]:
    """The searches whose rates ``methods`` train at: ``TARGET`` for any method but own-source, ``SOURCES``
    for own-source."""
    return [name for name, needed in ((TARGET, any(method != OWN_SOURCE for method in methods)),
                                      (SOURCES, OWN_SOURCE in methods)) if needed]


def run_search(
    config: FederationConfig, name: str, work_dir: Path, grid: Sequence[float] = LEARNING_RATE_GRID,
    ladder: Sequence[float] = LEARNING_RATE_LADDER, log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Search ``name`` (``TARGET`` or ``SOURCES``) in ``work_dir/name``, with its ``procedure``."""
    search = SEARCHES[name]
    found = search_learning_rate(config, search.score, work_dir / name, grid, ladder,
                                 lambda line: log(f"{config.name}: {search.models}: {line}"))
    return {**found, "procedure": search.procedure}


def procedure(name: str) -> str:
    """How search ``name`` picks its rate, as its results record it (a kept search with another procedure is
    stale)."""
    return SEARCHES[name].procedure


def tuning_record(searches: dict[str, dict[str, Any]], seed: int) -> dict[str, Any]:
    """What ``results.json`` records as ``learning_rate_tuning``: the target's search at the top (absent when
    it was not run), the sources' under ``own_source`` (``None`` when not run), and the seed they ran with.
    Results of the earlier one-rate procedure have a top-level search and no ``own_source`` key."""
    return {"seed": seed, **searches.get(TARGET, {}), "own_source": searches.get(SOURCES)}


def method_learning_rate(tuning: dict[str, Any], method: str) -> float:
    """The full-model rate ``method`` trains at under ``tuning``: own-source's where it was searched apart
    (results of the earlier one-rate procedure have no ``own_source``), the target's otherwise."""
    search = tuning["own_source"] if method == OWN_SOURCE and "own_source" in tuning else tuning
    if not search or "chosen" not in search:
        raise ValueError(f"learning_rate_tuning holds no rate for {method}: its search was not run")
    return search["chosen"]


def at_learning_rate(config: FederationConfig, rate: float) -> FederationConfig:
    """A copy of ``config`` whose full-model training runs at ``rate``."""
    at_rate = copy.deepcopy(config)
    at_rate.federation.finetune_learning_rate = rate
    return at_rate


def search_learning_rate(
    config: FederationConfig, score: DevScorer, work_dir: Path, grid: Sequence[float] = LEARNING_RATE_GRID,
    ladder: Sequence[float] = LEARNING_RATE_LADDER, log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Mean development accuracy (``score`` per party) at every rate of ``grid``, then at the next rung of
    ``ladder`` beyond whichever edge the best rate sits on, and the chosen rate (with ``config.seed``)."""
    per_rate: dict[float, list[float]] = {}
    trying = list(grid)
    while trying:
        for rate in trying:
            per_rate[rate] = _dev_accuracies(config, rate, score, work_dir)
            log(f"full-model learning rate {rate:g}: mean development accuracy {np.mean(per_rate[rate]):.4f}")
        means = {rate: float(np.mean(values)) for rate, values in sorted(per_rate.items())}
        trying = _beyond_edge(means, ladder)
    chosen = max(means, key=means.__getitem__)  # max keeps the first (smallest) of ties
    return {"grid": list(grid), "tried": list(means), "chosen": chosen, "seed": config.seed,
            "dev_accuracy": {repr(rate): mean for rate, mean in means.items()},
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


def _dev_accuracies(config: FederationConfig, rate: float, score: DevScorer, work_dir: Path) -> list[float]:
    """Every party's development accuracy under ``score`` at full-model rate ``rate``."""
    trial = at_learning_rate(config, rate)
    accuracies = []
    for party in range(config.num_parties):
        train, _ = party_datasets(trial, party)
        split = train.train_test_split(test_size=DEV_FRACTION, seed=config.data_seed)
        accuracies.append(score(trial, party, split["train"], split["test"],
                                work_dir / f"lr-{rate:g}" / f"party-{party}"))
    return accuracies


def _own_source_records(config: FederationConfig, party: int, train: datasets.Dataset, dev: datasets.Dataset,
                        output_dir: Path, curve: bool = False) -> list[dict[str, Any]]:
    return fine_tune_own_source(config, party, train, dev, output_dir, curve=curve)[0]


def _grown_records(config: FederationConfig, party: int, train: datasets.Dataset, dev: datasets.Dataset,
                   output_dir: Path, curve: bool = False) -> list[dict[str, Any]]:
    return grow_and_train_alone(config, load_source(config, party), train, {party: dev}, output_dir, scale=1,
                                phase="independent", curve=curve)[0]


@dataclass(frozen=True)
class Search:
    """One of the two searches: one party's run (its evaluation records; only at the end of each phase unless
    ``curve``), how the results describe the search, what its log names."""

    run: Callable[..., list[dict[str, Any]]]
    procedure: str
    models: str

    def score(self, config: FederationConfig, party: int, train: datasets.Dataset, dev: datasets.Dataset,
              output_dir: Path) -> float:
        """The party's final development accuracy: all the search reads of a run."""
        return self.run(config, party, train, dev, output_dir)[-1]["parties"][str(party)]["accuracy"]


SEARCHES = {TARGET: Search(_grown_records, PROCEDURE, "grown models"),
            SOURCES: Search(_own_source_records, OWN_SOURCE_PROCEDURE, "own sources")}
