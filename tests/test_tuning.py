"""The learning-rate search steps past an edge of its grid instead of choosing the edge."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from fedgrow_hf.federated.config import FederationConfig
from fedgrow_hf.reproduce import preset_config, tuning
from fedgrow_hf.reproduce.tuning import LEARNING_RATE_GRID, LEARNING_RATE_LADDER, tune_finetune_learning_rate


def _tune_with_peak(monkeypatch, peak: float, flat_below: float = 0.0) -> dict:
    """Run the search with a development accuracy that falls off with the log-distance from ``peak`` (and is
    flat below ``flat_below``), so what it tries and chooses is known without training anything."""
    scored: list[float] = []

    def accuracy(config: FederationConfig, party: int, output_dir: Path) -> float:
        rate = config.federation.finetune_learning_rate
        scored.append(rate)
        return 0.9 - 0.1 * abs(math.log10(max(rate, flat_below) / peak)) + 0.001 * party

    monkeypatch.setattr(tuning, "_dev_accuracy", accuracy)
    config = FederationConfig.from_dict(preset_config("tiny", "/data"))
    result = tune_finetune_learning_rate(config, Path("/unused"), log=lambda message: None)
    assert sorted(scored) == [rate for rate in result["tried"] for _ in range(config.num_parties)]  # each once
    return result


def test_an_interior_best_rate_tries_only_the_grid(monkeypatch):
    result = _tune_with_peak(monkeypatch, peak=1e-4)
    assert result["tried"] == list(LEARNING_RATE_GRID) and result["chosen"] == 1e-4
    parties = FederationConfig.from_dict(preset_config("tiny", "/data")).num_parties
    assert result["dev_accuracy"]["0.0001"] == pytest.approx(0.9 + 0.001 * (parties - 1) / 2)  # mean over parties


def test_a_best_rate_at_the_top_edge_steps_up_until_it_is_interior(monkeypatch):
    result = _tune_with_peak(monkeypatch, peak=1e-3)
    assert result["tried"] == [3e-5, 1e-4, 3e-4, 1e-3, 3e-3] and result["chosen"] == 1e-3
    assert result["grid"] == list(LEARNING_RATE_GRID)


def test_a_best_rate_at_the_bottom_edge_steps_down_and_the_ladder_bounds_the_search(monkeypatch):
    result = _tune_with_peak(monkeypatch, peak=1e-7)
    assert result["tried"] == [LEARNING_RATE_LADDER[0], *LEARNING_RATE_GRID]
    assert result["chosen"] == LEARNING_RATE_LADDER[0]  # the ladder's end: nothing smaller is tried


def test_ties_keep_the_smaller_rate_and_a_tied_edge_does_not_step_on(monkeypatch):
    result = _tune_with_peak(monkeypatch, peak=3e-4, flat_below=3e-4)  # every rate up to 3e-4 scores the same
    assert result["chosen"] == 3e-5 and result["tried"] == list(LEARNING_RATE_GRID)
