"""benchmarks/bench_decoder_growth.py at its smoke size: the three arms train on the same stream of batches,
the grown model starts at its source's loss, and the figures follow from the curves (the benchmark's own
figures are measured by hand, see benchmarks/README.md)."""

from __future__ import annotations

import importlib.util
import json
import sys
from dataclasses import replace
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_decoder_growth.py"
spec = importlib.util.spec_from_file_location("bench_decoder_growth", SCRIPT)
bench = importlib.util.module_from_spec(spec)
sys.modules[spec.name] = bench  # its dataclasses resolve their annotations in their module
spec.loader.exec_module(bench)


@pytest.fixture
def smoke(shared_data_dir):
    return replace(bench.PRESETS["smoke"], data=str(shared_data_dir / "agnews"))


def test_reach_reads_the_step_and_flop_fractions_off_the_curves(smoke):
    result = {
        "scratch": {"curve": [(0, 9.0), (4, 6.0), (8, 5.0), (12, 4.0)], "flops_per_step": {"step": 10}},
        "grown": {"curve": [(0, 5.0), (4, 4.5), (8, 3.9), (12, 3.5)],
                  "flops_per_step": {"operator_step": 30, "step": 10}},
        "source": {"curve": [(0, 5.0), (12, 4.8)], "flops_per_step": {"step": 3}},
    }
    summary = bench.reach(result, smoke)
    assert summary["steps_to_reach"] == 8 and summary["step_fraction"] == pytest.approx(8 / 12)
    assert summary["flop_fraction"] == pytest.approx((4 * 30 + 4 * 10) / (12 * 10))  # 4 operator steps, then 4
    result["grown"]["curve"][-1] = (12, 4.1)
    result["grown"]["curve"][2] = (8, 4.2)
    assert bench.reach(result, smoke)["steps_to_reach"] is None


def test_the_smoke_run_trains_three_arms_and_writes_their_curves_and_table(smoke, tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(bench.PRESETS, "smoke", smoke)
    output = tmp_path / "smoke.json"
    monkeypatch.setattr(sys, "argv", ["bench", "--smoke", "--threads", "1", "--cache-dir", str(tmp_path / "cache"),
                                      "--output", str(output)])
    bench.main()
    assert "| grown: fraction of scratch's steps to reach its final val loss |" in capsys.readouterr().out
    written = json.loads(output.read_text())
    runs = written["runs"]["0"]
    assert written["preset"] == "smoke" and set(runs) == {"scratch", "grown", "source"}
    steps = [0, *range(smoke.eval_every, smoke.steps + 1, smoke.eval_every)]
    assert all([step for step, _ in arm["curve"]] == steps for arm in runs.values())
    # lossless growth: the grown model starts at its source's loss
    assert runs["grown"]["curve"][0][1] == pytest.approx(runs["source"]["curve"][0][1], abs=1e-4)
    assert runs["grown"]["flops_per_step"]["step"] == runs["scratch"]["flops_per_step"]["step"]
    assert runs["grown"]["flops_per_step"]["operator_step"] > runs["scratch"]["flops_per_step"]["step"]
    assert bench.learning_rate(smoke, smoke.operator_steps - 1) == smoke.learning_rate  # warm-up ends at the merge
