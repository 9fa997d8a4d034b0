"""The learning-rate search steps past an edge of its grid instead of choosing the edge; own-source gets the
rate searched for the sources' shapes, every other method the target's."""

from __future__ import annotations

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
    SEARCHES,
    SOURCES,
    TARGET,
    method_learning_rate,
    search_learning_rate,
    searches_for,
    tuning_record,
)


def _config(shared_data_dir: Path) -> FederationConfig:
    return FederationConfig.from_dict(preset_config("tiny", shared_data_dir))


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


def test_only_the_rates_the_methods_train_at_are_searched():
    assert searches_for(METHODS) == [TARGET, SOURCES]
    assert searches_for(["own-source"]) == [SOURCES]
    assert searches_for(["fed-grow", "fed-scratch"]) == [TARGET]


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


@pytest.mark.parametrize("search", [TARGET, SOURCES])
def test_a_search_scores_what_the_same_run_with_a_learning_curve_ends_on(shared_data_dir, tmp_path, search):
    """A search's runs evaluate only at the end: evaluating along the way must not change what they train."""
    config, party = _config(shared_data_dir), 1
    train, _ = party_datasets(config, party)
    split = train.train_test_split(test_size=DEV_FRACTION, seed=config.data_seed)

    def run(curve: bool) -> list[dict]:
        return SEARCHES[search].run(config, party, split["train"], split["test"], tmp_path / f"curve-{curve}",
                                    curve=curve)

    with_curve, at_the_end = run(True), run(False)
    assert len(with_curve) > len(at_the_end) == (1 if search == SOURCES else 2)  # the end of each phase
    final = at_the_end[-1]["parties"][str(party)]
    assert with_curve[-1]["parties"][str(party)] == final  # accuracy, precision and loss, to the last bit
    assert SEARCHES[search].score(config, party, split["train"], split["test"], tmp_path / "search") == final["accuracy"]
