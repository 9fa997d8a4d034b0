"""The learning-rate search steps past an edge of its grid instead of choosing the edge; own-source gets the
rate searched for the sources' shapes, every other method the target's; in the operator-only regime the
operator's rate is searched with independent growth and the target's with a Fed-Scratch party alone."""

from __future__ import annotations

import copy
import math
from pathlib import Path

import datasets
import pytest

from fedgrow_hf.experiment.config import FederationConfig
from fedgrow_hf.experiment.data import party_datasets
from fedgrow_hf.reproduce import METHODS, preset_config
from fedgrow_hf.reproduce.tuning import (
    DEV_FRACTION,
    LEARNING_RATE_GRID,
    LEARNING_RATE_LADDER,
    OPERATOR,
    OPERATOR_RATE_GRID,
    OPERATOR_RATE_LADDER,
    SEARCHES,
    SOURCES,
    TARGET,
    at_tuned_rates,
    keep_party_scores,
    method_learning_rate,
    search_learning_rate,
    search_of,
    searches_for,
    tuning_record,
)


def _config(shared_data_dir: Path) -> FederationConfig:
    return FederationConfig.from_dict(preset_config("tiny", shared_data_dir))


def _operator_only(shared_data_dir: Path) -> FederationConfig:
    """The tiny preset in the operator-only regime (the Fed-Grow paper's: ``phase2 = "merge"``)."""
    config = _config(shared_data_dir)
    config.federation.phase2 = "merge"
    config.validate()
    return config


def _search_with_peak(config: FederationConfig, tmp_path: Path, peak: float, flat_below: float = 0.0) -> dict:
    """Search with a development accuracy that falls off with the log-distance from ``peak`` (and is flat
    below ``flat_below``), so what it tries and chooses is known without training anything."""
    scored: list[tuple[float, int, int, int]] = []

    def score(trial: FederationConfig, party: int, train: datasets.Dataset, dev: datasets.Dataset,
              output_dir: Path) -> float:
        rate = trial.federation.finetune_learning_rate
        scored.append((rate, party, len(train), len(dev)))
        assert output_dir == tmp_path / f"lr-{rate:g}" / f"party-{party}"
        return 0.9 - 0.1 * abs(math.log10(max(rate, flat_below) / peak)) + 0.001 * party

    result = search_learning_rate(config, score, tmp_path, log=lambda line: None)
    assert sorted(rate for rate, *_ in scored) == [rate for rate in result["tried"] for _ in range(config.num_parties)]
    for _, _, train, dev in scored:  # a development split carved from the party's training share
        assert dev == pytest.approx(0.2 * (train + dev), abs=1)
    return result


def test_an_interior_best_rate_tries_only_the_grid(shared_data_dir, tmp_path):
    config = _config(shared_data_dir)
    result = _search_with_peak(config, tmp_path, peak=1e-4)
    assert result["tried"] == list(LEARNING_RATE_GRID) and result["chosen"] == 1e-4
    assert result["dev_accuracy"]["0.0001"] == pytest.approx(0.9 + 0.001 * (config.num_parties - 1) / 2)


def test_a_best_rate_at_the_top_edge_steps_up_until_it_is_interior(shared_data_dir, tmp_path):
    result = _search_with_peak(_config(shared_data_dir), tmp_path, peak=1e-3)
    assert result["tried"] == [3e-5, 1e-4, 3e-4, 1e-3, 3e-3] and result["chosen"] == 1e-3
    assert result["grid"] == list(LEARNING_RATE_GRID)


def test_a_best_rate_at_the_bottom_edge_steps_down_and_the_ladder_bounds_the_search(shared_data_dir, tmp_path):
    result = _search_with_peak(_config(shared_data_dir), tmp_path, peak=1e-7)
    assert result["tried"] == [LEARNING_RATE_LADDER[0], *LEARNING_RATE_GRID]
    assert result["chosen"] == LEARNING_RATE_LADDER[0]  # the ladder's end: nothing smaller is tried


def test_ties_keep_the_smaller_rate_and_a_tied_edge_does_not_step_on(shared_data_dir, tmp_path):
    result = _search_with_peak(_config(shared_data_dir), tmp_path, peak=3e-4, flat_below=3e-4)
    assert result["chosen"] == 3e-5 and result["tried"] == list(LEARNING_RATE_GRID)


def test_own_source_trains_at_the_sources_rate_every_other_method_at_the_targets():
    tuning = {"chosen": 3e-4, "own_source": {"chosen": 3e-3}}
    assert {method: method_learning_rate(tuning, method) for method in METHODS} == {
        method: 3e-3 if method == "own-source" else 3e-4 for method in METHODS}
    earlier = {"chosen": 3e-4}  # results of the one-rate procedure: every method at its rate
    assert {method_learning_rate(earlier, method) for method in METHODS} == {3e-4}


def test_only_the_rates_the_methods_train_at_are_searched(shared_data_dir):
    ligo = _config(shared_data_dir)
    assert searches_for(METHODS, ligo) == [TARGET, SOURCES]
    assert searches_for(["own-source"], ligo) == [SOURCES]
    assert searches_for(["fed-grow", "fed-scratch"], ligo) == [TARGET]
    # the operator-only regime: growth trains the operator alone, Fed-Scratch alone the target's whole shape
    operator_only = _operator_only(shared_data_dir)
    assert searches_for(METHODS, operator_only) == [OPERATOR, TARGET, SOURCES]
    assert searches_for(["fed-grow", "independent"], operator_only) == [OPERATOR]
    assert searches_for(["fed-scratch", "own-source"], operator_only) == [TARGET, SOURCES]


def test_each_method_trains_at_the_rates_searched_for_what_it_trains(shared_data_dir):
    """In the operator-only regime the operator's rate is every method's operator rate, the target's is
    Fed-Scratch's full-model rate, the sources' own-source's; a growth method keeps the preset's full-model rate
    (it trains none) even where the target's was not searched. In LiGO's regime the operator's is not searched."""
    config = _operator_only(shared_data_dir)
    tuning = tuning_record({OPERATOR: {"chosen": 1e-2}, SOURCES: {"chosen": 3e-4}}, seed=0)
    for method in ("fed-grow", "independent", "central-ligo", "own-source"):
        tuned = at_tuned_rates(config, tuning, method)
        full_model = 3e-4 if method == "own-source" else config.federation.finetune_learning_rate
        assert (tuned.training["learning_rate"], tuned.federation.finetune_learning_rate) == (1e-2, full_model)
    with pytest.raises(ValueError, match="no rate for fed-scratch"):
        at_tuned_rates(config, tuning, "fed-scratch")
    whole = tuning_record({OPERATOR: {"chosen": 1e-2}, TARGET: {"chosen": 1e-3}, SOURCES: {"chosen": 3e-4}}, seed=0)
    assert at_tuned_rates(config, whole, "fed-scratch").federation.finetune_learning_rate == 1e-3
    comparison = at_tuned_rates(config, whole)
    assert (comparison.training["learning_rate"], comparison.federation.finetune_learning_rate) == (1e-2, 1e-3)
    ligo = _config(shared_data_dir)
    assert at_tuned_rates(ligo, tuning_record({TARGET: {"chosen": 1e-4}}, seed=0), "fed-grow").training == ligo.training


@pytest.mark.parametrize("rate", ["operator", "full-model"])
def test_an_operator_only_search_sets_the_rate_its_runs_train_at(shared_data_dir, tmp_path, rate):
    """The operator's search trains independent growth with the operator at each rate and the target's search a
    Fed-Scratch party alone at each full-model rate; each starts from its own grid."""
    config = _operator_only(shared_data_dir)
    name = OPERATOR if rate == "operator" else TARGET
    seen: list[tuple[float, float]] = []

    def score(trial: FederationConfig, party: int, *_: object) -> float:
        seen.append((trial.training["learning_rate"], trial.federation.finetune_learning_rate))
        return 0.5
    search = search_of(name, config)
    result = search_learning_rate(config, score, tmp_path, search.grid, log=lambda line: None, at_rate=search.at_rate)
    grid = OPERATOR_RATE_GRID if rate == "operator" else LEARNING_RATE_GRID
    assert result["tried"] == list(grid) and result["chosen"] == grid[0]  # ties keep the smallest
    # the operator's search steps on past the full-model ladder's end (an operator still rose at 3e-2)
    assert search.ladder == (OPERATOR_RATE_LADDER if rate == "operator" else LEARNING_RATE_LADDER)
    assert OPERATOR_RATE_LADDER[-1] > LEARNING_RATE_LADDER[-1] and set(OPERATOR_RATE_GRID) <= set(OPERATOR_RATE_LADDER)
    varied = [operator if rate == "operator" else full for operator, full in seen]
    assert sorted(set(varied)) == list(grid)
    assert search.run is not SEARCHES[TARGET].run and "operator-only regime" in search.procedure


def test_a_record_with_one_search_gives_its_rate_and_refuses_the_other():
    target_only = tuning_record({TARGET: {"chosen": 1e-3, "seed": 0}}, seed=0)
    assert target_only["own_source"] is None and method_learning_rate(target_only, "fed-grow") == 1e-3
    with pytest.raises(ValueError, match="no rate for own-source"):
        method_learning_rate(target_only, "own-source")
    sources_only = tuning_record({SOURCES: {"chosen": 3e-3, "seed": 2}}, seed=2)
    assert sources_only == {"seed": 2, "own_source": {"chosen": 3e-3, "seed": 2}}
    assert method_learning_rate(sources_only, "own-source") == 3e-3
    with pytest.raises(ValueError, match="no rate for independent"):
        method_learning_rate(sources_only, "independent")


@pytest.mark.parametrize(("regime", "search"), [("ligo", TARGET), ("ligo", SOURCES), ("operator-only", OPERATOR),
                                               ("operator-only", TARGET)])
def test_a_search_scores_what_the_same_run_with_a_learning_curve_ends_on(shared_data_dir, tmp_path, regime, search):
    """A search's runs evaluate only at the end: evaluating along the way must not change what they train."""
    config = _config(shared_data_dir) if regime == "ligo" else _operator_only(shared_data_dir)
    party, searched = 1, search_of(search, config)
    train, _ = party_datasets(config, party)
    split = train.train_test_split(test_size=DEV_FRACTION, seed=config.data_seed)

    def run(curve: bool) -> list[dict]:
        return searched.run(config, party, split["train"], split["test"], tmp_path / f"curve-{curve}", curve=curve)

    with_curve, at_the_end = run(True), run(False)
    phases = 2 if (regime, search) == ("ligo", TARGET) else 1  # an evaluation at the end of each phase
    assert len(with_curve) > len(at_the_end) == phases
    final = at_the_end[-1]["parties"][str(party)]
    assert with_curve[-1]["parties"][str(party)] == final  # accuracy, precision and loss, to the last bit
    assert searched.score(config, party, split["train"], split["test"], tmp_path / "search") == final["accuracy"]


def _counting_score(calls: list[tuple[float, int]]):
    """A scorer that records which (operator rate, party) it scored and scores by the party alone."""
    def score(trial: FederationConfig, party: int, *_: object) -> float:
        calls.append((trial.training["learning_rate"], party))
        return 0.5 + 0.01 * party
    return score


def test_a_resumed_search_scores_only_what_no_sitting_kept_with_the_same_config_and_scoring(shared_data_dir,
                                                                                           tmp_path):
    """Every party's score at a rate is kept as it is measured: a search interrupted mid-rate and resumed scores
    only the party it lost, to the same result; another scoring, another config or no ``--resume`` rescores."""
    config, search = _operator_only(shared_data_dir), search_of(OPERATOR, _operator_only(shared_data_dir))
    parties = config.num_parties

    def searched(trial: FederationConfig, resume: bool, scoring: str = search.scored) -> tuple[dict, list]:
        calls: list[tuple[float, int]] = []
        result = search_learning_rate(trial, _counting_score(calls), tmp_path, (1e-3, 3e-3), log=lambda line: None,
                                      at_rate=search.at_rate, rate_name=search.rate, resume=resume, scoring=scoring)
        return result, calls

    first, calls = searched(config, resume=False)
    assert len(calls) == 2 * parties and first["chosen"] == 1e-3  # ties keep the smaller rate
    (tmp_path / "lr-0.003" / f"party-{parties - 1}.json").unlink()  # a sitting that ended before the last party
    resumed, calls = searched(config, resume=True)
    timing = ("wall_seconds", "cpu_seconds")
    assert calls == [(3e-3, parties - 1)] and {**resumed, **dict.fromkeys(timing)} == {**first, **dict.fromkeys(timing)}
    assert all(resumed[key] >= 0 for key in timing) and "untimed_scores" not in resumed
    assert len(searched(config, resume=True, scoring="another run")[1]) == 2 * parties
    reseeded = copy.deepcopy(config)
    reseeded.seed += 1
    assert len(searched(reseeded, resume=True)[1]) == 2 * parties
    assert len(searched(config, resume=False)[1]) == 2 * parties


def test_a_kept_search_whose_ladder_grew_gives_its_scores_to_the_new_search(shared_data_dir, tmp_path):
    """A search kept whole (before each party's score was kept, or with a shorter ladder) holds its per-party
    scores in its summary: ``keep_party_scores`` keeps those measured with the same config and the same scoring
    (what ran, on what split), so the rerun search scores only the rates it had not tried."""
    config = _operator_only(shared_data_dir)
    search, parties = search_of(OPERATOR, config), config.num_parties
    scores = [0.6 + 0.01 * party for party in range(parties)]
    older_ladder = search.procedure.replace(", 1e-01, 3e-01", "").replace(", 0.1, 0.3", "")
    assert search.procedure.startswith(f"{search.scored};") and older_ladder != search.procedure
    kept = {"config": config.to_dict(), "summary": {"procedure": older_ladder, "dev_accuracy_per_party": {"0.001": scores}}}
    assert keep_party_scores(kept, config, OPERATOR, tmp_path) == parties
    assert keep_party_scores(kept, config, OPERATOR, tmp_path) == 0  # nothing kept twice
    calls: list[tuple[float, int]] = []
    result = search_learning_rate(config, _counting_score(calls), tmp_path / OPERATOR, (1e-3, 3e-3),
                                  log=lambda line: None, at_rate=search.at_rate, resume=True, scoring=search.scored)
    assert 1e-3 not in {rate for rate, _ in calls} and (3e-3, 0) in calls
    assert result["dev_accuracy_per_party"]["0.001"] == scores
    assert result["untimed_scores"] == parties  # the kept search's scores carry no time: the sums leave them out
    # scored otherwise (here: before the development split was held out of the sources), or with another config
    leaky = {**kept, "summary": {**kept["summary"], "procedure": older_ladder.replace(", which a source built from the "
                                                                                    "party's data never sees either", "")}}
    other = copy.deepcopy(config)
    other.federation.rounds += 1
    for stale, with_config in ((leaky, config), (kept, other)):
        assert keep_party_scores(stale, with_config, OPERATOR, tmp_path / "elsewhere") == 0
