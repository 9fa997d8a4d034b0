"""``fedgrow simulate --resume``: kill the server mid-run, resume, get the uninterrupted run's result."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from tests.federated.conftest import tiny_federation

pytest.importorskip("flwr")
pytest.importorskip("ray")

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]


def _simulate(config_path: Path, run_dir: Path, *extra: str) -> subprocess.Popen:
    """``fedgrow simulate`` in its own process group, on the in-process engine (the server and every party in
    that one process, which ``tests/federated/test_inprocess.py`` holds to Ray's results): no Ray start-up. One
    thread, as Ray gives each party: two threads sum in another order, 2e-4 apart after the two rounds."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    return subprocess.Popen(
        [sys.executable, "-m", "fedgrow_hf.cli", "simulate", str(config_path), "--run-dir", str(run_dir),
         "--engine", "inprocess", *extra],
        cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, start_new_session=True,
    )


def _checkpointed_round(run_dir: Path) -> int:
    state = run_dir / "checkpoint" / "state.json"
    return json.loads(state.read_text())["round"] if state.exists() else 0


def test_killed_server_resumes_to_the_uninterrupted_result(tiny_run, tmp_path):
    """The uninterrupted run is the shared ``tiny_run`` (2 rounds, Ray); this one is killed after round 1 and
    resumed; the two agree as the engines do (``test_inprocess.py``)."""
    config_path = tmp_path / "federation.json"
    config_path.write_text(tiny_run["config"].to_json())
    rounds = tiny_run["config"].federation.rounds
    resumed_dir = tmp_path / "resumed"
    killed = _simulate(config_path, resumed_dir)
    deadline = time.monotonic() + 300
    while _checkpointed_round(resumed_dir) < 1 and killed.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)  # round 2 takes about a second in one process
    assert killed.poll() is None, "the run ended before it could be killed"
    os.killpg(killed.pid, signal.SIGKILL)  # the server and its parties, mid-run
    killed.wait(timeout=60)
    stopped_at = _checkpointed_round(resumed_dir)
    assert 1 <= stopped_at < rounds
    assert not (resumed_dir / "global_operator.safetensors").exists()

    resumed = _simulate(config_path, resumed_dir, "--resume")
    assert resumed.wait(timeout=400) == 0, resumed.stderr.read()[-3000:]

    expected = tiny_run["final"]
    final = load_file(str(resumed_dir / "global_operator.safetensors"))
    assert set(final) == set(expected)
    for key in expected:
        torch.testing.assert_close(final[key], expected[key], atol=1e-5, rtol=1e-4)
    lines = [json.loads(line) for line in (resumed_dir / "metrics.jsonl").read_text().splitlines()]
    assert [line["round"] for line in lines if line["phase"] == "operator"] == list(range(1, rounds + 1))


def test_a_finished_run_dir_is_not_silently_overwritten(shared_data_dir, tmp_path):
    from fedgrow_hf.federated.checkpoint import ServerCheckpoint, save_checkpoint
    from fedgrow_hf.federated.server_app import run_federation

    config = tiny_federation(shared_data_dir)
    save_checkpoint(tmp_path, ServerCheckpoint(1, {"depth": torch.zeros(2)}, {}))
    with pytest.raises(FileExistsError, match="resume"):
        run_federation(None, config, tmp_path)
