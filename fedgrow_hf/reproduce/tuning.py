"""Picking the learning rates on data no figure of the comparison uses.

``fedgrow reproduce PRESET --tune`` runs the searches of :func:`searches_for` before the methods: each party's
*training* share is split again (``DEV_FRACTION`` held out as a development split, seeded by the config's
``data_seed``), a method is run for its usual step budget at every rate of its search's grid on the rest, and
the rate with the best mean development accuracy across parties wins (ties: the smaller rate). A best rate at an
edge of what was tried is not a choice but a sign that the search stopped too soon, so the search then steps on
along ``LEARNING_RATE_LADDER`` in that direction until the best rate has a worse neighbour on both sides or the
ladder ends.

One rate is searched per shape of model trained, since the best rate depends on what is trained:
- the **target's** full-model rate (``finetune_learning_rate``), used by every method that trains the target's
  whole shape: in LiGO's regime phase 2 of every growth method and all of Fed-Scratch, chosen with independent
  growth (the growth recipe without the federation); in the operator-only regime (``phase2 = "merge"``) only
  Fed-Scratch trains it, so it is chosen with a Fed-Scratch party alone (the seeded random target);
- the **sources'** rate (own-source fine-tuning, the only method that trains the sources' shapes), chosen with
  own-source fine-tuning, so the user's alternative is measured at its own best rate;
- in the operator-only regime, the **operator's** rate (``[training].learning_rate``: every step of every growth
  method trains the operator alone), chosen with independent growth (a Fed-Grow party's Dual-LiGO model trained
  alone), on its own grid: an operator moves its grown model far less per step than a full-model step does.
Neither the parties' held-out shares nor the common test split are touched, and no method is tuned for
itself beyond the shape of model it trains.

A search reads only each run's final development accuracy, so its runs evaluate only at the end
(evaluating along the way changes nothing in training; ``benchmarks/bench_tuning.py`` measures its time),
and a search runs only when a method that trains at its rate is run. What made the search what it is, as
measured: docs/reproduction.md, "Learning-rate search".
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import datasets
import numpy as np

from ..experiment.config import FederationConfig
from ..experiment.data import party_datasets, party_dev_set
from ..experiment.parties import load_source
from .kept import keep, kept_or_run, same_config
from .methods import (
    FED_SCRATCH,
    OWN_SOURCE,
    fine_tune_own_source,
    grow_and_train_alone,
    grow_dual_alone,
    train_scratch_alone,
    trains_in_phase2,
)

LEARNING_RATE_GRID = (3e-5, 1e-4, 3e-4)
OPERATOR_RATE_GRID = (1e-3, 3e-3, 1e-2)  # the operator alone (the operator-only regime)
LEARNING_RATE_LADDER = (1e-5, 3e-5, 1e-4, 3e-4, 1e-3, 3e-3, 1e-2, 3e-2)
# the operator's, a rung further: paper-agnews' first operator search (IID) still rose at 3e-2, the full-model
# ladder's end (mean development accuracy 0.5825, 0.6094, 0.6469, 0.6663 from 1e-3 to 3e-2)
OPERATOR_RATE_LADDER = (1e-4, 3e-4, 1e-3, 3e-3, 1e-2, 3e-2, 1e-1, 3e-1)
DEV_FRACTION = 0.2


# how a rate is scored, whatever the search: with what the search runs, what a party's kept score means
SCORED_ON = (f"for its full step budget on {1 - DEV_FRACTION:.0%} of every party's training share, scored on the "
             f"other {DEV_FRACTION:.0%} (a development split seeded by data_seed, which a source built from the "
             "party's data never sees either)")


def _choice_text(grid: Sequence[float], ladder: Sequence[float]) -> str:
    """How a search starting from ``grid`` and stepping along ``ladder`` picks its rate from the scores, as its
    procedure states it."""
    return ("the rate with the best mean development accuracy across parties (ties: the smaller rate), starting from "
            f"{', '.join(f'{rate:g}' for rate in grid)} and stepping on along "
            f"{', '.join(f'{rate:g}' for rate in ladder)} while the best rate is the largest or smallest one tried")


# what each search runs to score a rate: with its grid and ladder, the procedure its results record
GROWTH_SCORING = "independent growth (the target's shape: every method but own-source)"
OWN_SOURCE_SCORING = "own-source fine-tuning (the sources' shapes: own-source only)"
SCRATCH_SCORING = ("a Fed-Scratch party alone (the target's whole shape from its seeded random start: Fed-Scratch, "
                   "the one method of the operator-only regime that trains it)")
OPERATOR_SCORING = ("independent growth (a Fed-Grow party's Dual-LiGO model alone: the operator every growth method "
                    "of the operator-only regime trains)")

DevScorer = Callable[[FederationConfig, int, datasets.Dataset, datasets.Dataset, Path], float]
TARGET, SOURCES, OPERATOR = "target", "own-source", "operator"  # the searches: the shapes and what is trained


def searches_for(methods: Sequence[str], config: FederationConfig) -> list[str]:
    """The searches whose rates ``methods`` train at under ``config``'s regime: in LiGO's, ``TARGET`` for any
    method but own-source; in the operator-only one, ``OPERATOR`` for any growth method and ``TARGET`` for
    Fed-Scratch; ``SOURCES`` for own-source in both."""
    if trains_in_phase2(config):
        needed = ((TARGET, any(method != OWN_SOURCE for method in methods)),)
    else:
        needed = ((OPERATOR, any(method not in (OWN_SOURCE, FED_SCRATCH) for method in methods)),
                  (TARGET, FED_SCRATCH in methods))
    return [name for name, needs in (*needed, (SOURCES, OWN_SOURCE in methods)) if needs]


def run_search(
    config: FederationConfig, name: str, work_dir: Path, grid: Sequence[float] | None = None,
    ladder: Sequence[float] | None = None, log: Callable[[str], None] = print, resume: bool = False,
) -> dict[str, Any]:
    """Search ``name`` (``TARGET``, ``SOURCES`` or ``OPERATOR``: :func:`search_of`) in ``work_dir/name``, from its
    own grid and along its own ladder unless ``grid`` and ``ladder``, with its ``procedure``; with ``resume``,
    every party's score kept there by an earlier sitting with the same config and scoring is reused."""
    search = search_of(name, config)
    found = search_learning_rate(config, search.score, work_dir / name, grid or search.grid, ladder or search.ladder,
                                 lambda line: log(f"{config.name}: {search.models}: {line}"), search.at_rate,
                                 search.rate, resume=resume, scoring=search.scored)
    return {**found, "procedure": search.procedure}


def procedure(name: str, config: FederationConfig) -> str:
    """How search ``name`` picks its rate under ``config``'s regime, as its results record it (a kept search with
    another procedure is stale)."""
    return search_of(name, config).procedure


def tuning_record(searches: dict[str, dict[str, Any]], seed: int) -> dict[str, Any]:
    """What ``results.json`` records as ``learning_rate_tuning``: the target's search at the top (absent when
    it was not run), the sources' under ``own_source`` (``None`` when not run), the operator's under ``operator``
    (only where it was run), and the seed they ran with. Results of the earlier one-rate procedure have a
    top-level search and no ``own_source`` key."""
    operator = {"operator": searches[OPERATOR]} if OPERATOR in searches else {}
    return {"seed": seed, **searches.get(TARGET, {}), "own_source": searches.get(SOURCES), **operator}


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


def at_operator_rate(config: FederationConfig, rate: float) -> FederationConfig:
    """A copy of ``config`` whose operator trains at ``rate``."""
    at_rate = copy.deepcopy(config)
    at_rate.training["learning_rate"] = rate
    return at_rate


def at_tuned_rates(config: FederationConfig, tuning: dict[str, Any], method: str | None = None) -> FederationConfig:
    """``config`` at the rates ``tuning`` chose: the operator's where it was searched, and the full model's: the
    target's for the comparison's own config (``method`` None), else the one ``method`` trains at
    (:func:`method_learning_rate`) where it trains the full model at all: in LiGO's regime every method, in the
    operator-only one own-source and Fed-Scratch."""
    tuned = at_operator_rate(config, tuning["operator"]["chosen"]) if tuning.get("operator") else config
    if method is None:
        return at_learning_rate(tuned, tuning["chosen"]) if "chosen" in tuning else copy.deepcopy(tuned)
    if trains_in_phase2(config) or method in (OWN_SOURCE, FED_SCRATCH):
        return at_learning_rate(tuned, method_learning_rate(tuning, method))
    return copy.deepcopy(tuned)


def search_learning_rate(
    config: FederationConfig, score: DevScorer, work_dir: Path, grid: Sequence[float] = LEARNING_RATE_GRID,
    ladder: Sequence[float] = LEARNING_RATE_LADDER, log: Callable[[str], None] = print,
    at_rate: Callable[[FederationConfig, float], FederationConfig] = at_learning_rate, rate_name: str = "full-model",
    *, resume: bool = False, scoring: str = "",
) -> dict[str, Any]:
    """Mean development accuracy (``score`` per party, on ``config`` ``at_rate``) at every rate of ``grid``, then
    at the next rung of ``ladder`` beyond whichever edge the best rate sits on, and the chosen rate (with
    ``config.seed``). Every party's score is kept in ``work_dir/lr-<rate>/party-<party>.json`` with what
    ``scoring`` says ``score`` runs; with ``resume``, one kept with the same config and ``scoring`` is reused, so
    an interrupted search (or one whose ladder grew) runs only what it has not measured."""
    per_rate: dict[float, list[float]] = {}
    scores: list[dict[str, Any]] = []
    trying = list(grid)
    while trying:
        for rate in trying:
            scored = _dev_scores(at_rate(config, rate), rate, score, work_dir, resume, scoring, log)
            per_rate[rate], scores = [party["dev_accuracy"] for party in scored], scores + scored
            log(f"{rate_name} learning rate {rate:g}: mean development accuracy {np.mean(per_rate[rate]):.4f}")
        means = {rate: float(np.mean(values)) for rate, values in sorted(per_rate.items())}
        trying = _beyond_edge(means, ladder)
    chosen = max(means, key=means.__getitem__)  # max keeps the first (smallest) of ties
    return {"grid": list(grid), "tried": list(means), "chosen": chosen, "seed": config.seed,
            "dev_accuracy": {repr(rate): mean for rate, mean in means.items()},
            "dev_accuracy_per_party": {repr(rate): per_rate[rate] for rate in means}, **_search_time(scores)}


def _search_time(scores: list[dict[str, Any]]) -> dict[str, Any]:
    """The wall and CPU seconds of a search's runs, summed over every party's score (``untimed_scores``: how many
    were kept from a search recorded before scores were timed, so the sums leave them out)."""
    timed = [party for party in scores if "cpu_seconds" in party]
    untimed = {"untimed_scores": len(scores) - len(timed)} if len(timed) < len(scores) else {}
    return {"wall_seconds": round(sum(party["wall_seconds"] for party in timed), 1),
            "cpu_seconds": round(sum(party["cpu_seconds"] for party in timed), 1), **untimed}


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


def _dev_scores(trial: FederationConfig, rate: float, score: DevScorer, work_dir: Path, resume: bool,
                scoring: str, log: Callable[[str], None]) -> list[dict[str, Any]]:
    """Every party's development accuracy under ``score`` with ``trial`` (the config at ``rate``), its
    development split held out of all the party trains on, its source included (``[data].dev_fraction``), with
    the seconds it took; each kept (or with ``resume`` reused) as :func:`search_learning_rate` says."""
    searched = _dev_split_config(trial)
    scores = []
    for party in range(searched.num_parties):
        def scored(config: FederationConfig, party: int = party) -> dict[str, Any]:
            started, cpu_started = time.monotonic(), time.process_time()
            train, _ = party_datasets(config, party)
            accuracy = score(config, party, train, party_dev_set(config, party), _party_dir(work_dir, rate, party))
            return {"dev_accuracy": accuracy, "scoring": scoring, "wall_seconds": time.monotonic() - started,
                    "cpu_seconds": time.process_time() - cpu_started}

        scores.append(kept_or_run(_party_file(work_dir, rate, party), searched, resume, log,
                                  f"rate {rate:g}/party {party}", scored,
                                  still_valid=lambda summary: summary.get("scoring") == scoring))
    return scores


def _dev_split_config(trial: FederationConfig) -> FederationConfig:
    """``trial`` with its development split held out (``[data].dev_fraction``): the config a search's run is
    measured with, and kept with."""
    searched = copy.deepcopy(trial)
    searched.data.dev_fraction = DEV_FRACTION
    return searched


def _party_dir(work_dir: Path, rate: float, party: int) -> Path:
    """Where a party's run at ``rate`` trains."""
    return work_dir / f"lr-{rate:g}" / f"party-{party}"


def _party_file(work_dir: Path, rate: float, party: int) -> Path:
    """Where that run's score is kept, beside its folder."""
    return _party_dir(work_dir, rate, party).with_suffix(".json")


def keep_party_scores(kept_search: dict[str, Any], config: FederationConfig, name: str, work_dir: Path) -> int:
    """Keep every party's score of ``kept_search`` (a search's kept file: the config it ran with and its summary)
    where ``run_search(config, name, work_dir)`` keeps it and none is kept yet, if it was measured with ``config``
    and scored as search ``name`` scores a rate (its procedure may choose otherwise: a grid or ladder since
    changed). A resumed search then runs only the rates it has not measured; searches kept before each party's
    score was kept hold their scores only in their summary. Returns how many scores were kept."""
    search = search_of(name, config)
    summary = kept_search["summary"]
    if not (same_config(kept_search["config"], config) and summary.get("procedure", "").startswith(f"{search.scored};")):
        return 0
    added = 0
    for rate_text, scores in summary.get("dev_accuracy_per_party", {}).items():
        rate = float(rate_text)
        for party, accuracy in enumerate(scores):
            kept = _party_file(work_dir / name, rate, party)
            if not kept.is_file():
                keep(kept, _dev_split_config(search.at_rate(config, rate)),
                     {"dev_accuracy": accuracy, "scoring": search.scored})
                added += 1
    return added


def _own_source_records(config: FederationConfig, party: int, train: datasets.Dataset, dev: datasets.Dataset,
                        output_dir: Path, curve: bool = False) -> list[dict[str, Any]]:
    return fine_tune_own_source(config, party, train, dev, output_dir, curve=curve)[0]


def _grown_records(config: FederationConfig, party: int, train: datasets.Dataset, dev: datasets.Dataset,
                   output_dir: Path, curve: bool = False) -> list[dict[str, Any]]:
    return grow_and_train_alone(config, load_source(config, party), train, {party: dev}, output_dir, scale=1,
                                phase="independent", curve=curve)[0]


def _dual_records(config: FederationConfig, party: int, train: datasets.Dataset, dev: datasets.Dataset,
                  output_dir: Path, curve: bool = False) -> list[dict[str, Any]]:
    return grow_dual_alone(config, party, train, dev, output_dir, curve=curve)[0]


def _scratch_records(config: FederationConfig, party: int, train: datasets.Dataset, dev: datasets.Dataset,
                     output_dir: Path, curve: bool = False) -> list[dict[str, Any]]:
    return train_scratch_alone(config, party, train, dev, output_dir, curve=curve)


@dataclass(frozen=True)
class Search:
    """One search: one party's run (its evaluation records; only at the end of each phase unless ``curve``), how
    the results describe the search, what its log names, the rates it starts from and the rate it sets."""

    run: Callable[..., list[dict[str, Any]]]
    scoring: str  # what ``run`` is, as the procedure states it
    models: str
    grid: tuple[float, ...] = LEARNING_RATE_GRID
    operator: bool = False  # sets the operator's rate ([training].learning_rate), else the full model's

    @property
    def ladder(self) -> tuple[float, ...]:
        return OPERATOR_RATE_LADDER if self.operator else LEARNING_RATE_LADDER

    @property
    def scored(self) -> str:
        """How a rate is scored: what a party's kept score of this search means (a kept one with another is
        stale)."""
        return f"{self.scoring} {SCORED_ON}"

    @property
    def procedure(self) -> str:
        """How the search picks its rate, as its results record it (a kept search with another is stale)."""
        return f"{self.scored}; {_choice_text(self.grid, self.ladder)}"

    @property
    def rate(self) -> str:
        return "operator" if self.operator else "full-model"

    def at_rate(self, config: FederationConfig, rate: float) -> FederationConfig:
        return (at_operator_rate if self.operator else at_learning_rate)(config, rate)

    def score(self, config: FederationConfig, party: int, train: datasets.Dataset, dev: datasets.Dataset,
              output_dir: Path) -> float:
        """The party's final development accuracy: all the search reads of a run."""
        return self.run(config, party, train, dev, output_dir)[-1]["parties"][str(party)]["accuracy"]


# LiGO's regime; the operator-only regime's (``phase2 = "merge"``) differ in what chooses the target's rate
SEARCHES = {TARGET: Search(_grown_records, GROWTH_SCORING, "grown models"),
            SOURCES: Search(_own_source_records, OWN_SOURCE_SCORING, "own sources")}
OPERATOR_ONLY_SEARCHES = {OPERATOR: Search(_dual_records, OPERATOR_SCORING, "grown models", OPERATOR_RATE_GRID, True),
                          TARGET: Search(_scratch_records, SCRATCH_SCORING, "scratch targets"),
                          SOURCES: SEARCHES[SOURCES]}


def search_of(name: str, config: FederationConfig) -> Search:
    """Search ``name`` as ``config``'s regime runs it."""
    return (SEARCHES if trains_in_phase2(config) else OPERATOR_ONLY_SEARCHES)[name]
