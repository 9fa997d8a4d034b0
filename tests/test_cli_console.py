"""``fedgrow simulate`` and ``fedgrow reproduce`` show one progress display and the results; what parties and
libraries print goes to the run folder's log, or with ``--verbose`` to the console."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from fedgrow_hf.cli import main
from fedgrow_hf.cli.console import LOG_FILE, run_console
from tests.federated.conftest import tiny_federation

pytest.importorskip("rich")


def _print_like_a_library() -> None:
    """What a run's libraries and parties print: Python's streams, the file descriptors themselves (native code,
    Ray's forwarding) and a child process, with a warning (pytest would record one raised here)."""
    print("{'eval_loss': 0.69}")
    print("Map: 100%", file=sys.stderr)
    os.write(2, b"(ClientAppActor pid=1) native line\n")
    child = "import warnings; print('child line'); warnings.warn('`is_gradient_checkpointing` is deprecated', FutureWarning)"
    subprocess.run([sys.executable, "-c", child], check=True)


def test_quiet_console_sends_everything_else_to_the_log(tmp_path, capfd):
    with run_console(tmp_path / "run", verbose=False) as console:
        _print_like_a_library()
        console.print("round 1: acc 0.68")
    shown = capfd.readouterr()
    log = (tmp_path / "run" / LOG_FILE).read_text()
    for line in ("{'eval_loss': 0.69}", "Map: 100%", "is_gradient_checkpointing", "(ClientAppActor pid=1) native line",
                 "child line"):
        assert line in log and line not in shown.out + shown.err
    assert "round 1: acc 0.68" in shown.err and "round 1" not in log
    assert str(tmp_path / "run" / LOG_FILE) in shown.err.replace("\n", "")  # where to look
    print("after the run")  # the descriptors are the terminal's again
    assert capfd.readouterr().out == "after the run\n"


def test_verbose_console_shows_it_all_and_writes_no_log(tmp_path, capfd):
    with run_console(tmp_path / "run", verbose=True) as console:
        _print_like_a_library()
        console.print("round 1: acc 0.68")
    shown = capfd.readouterr()
    assert "{'eval_loss': 0.69}" in shown.out and "native line" in shown.err and "round 1" in shown.err
    assert not (tmp_path / "run").exists()


def test_an_error_restores_the_console_and_keeps_its_details_in_the_log(tmp_path, capfd):
    with pytest.raises(RuntimeError, match="party failed"), run_console(tmp_path, verbose=False):
        print("what led to it")
        raise RuntimeError("party failed")
    print("after the error")
    shown = capfd.readouterr()
    assert "what led to it" in (tmp_path / LOG_FILE).read_text() and "after the error" in shown.out


def test_simulate_shows_its_progress_and_logs_the_parties(shared_data_dir, tmp_path, capfd):
    """A whole (in-process, one-round) federation of the demo config: the console holds the progress display
    and where the results are; the parties' Trainer dicts and the data's progress bars are in the log."""
    path = tmp_path / "demo.json"
    path.write_text(tiny_federation(shared_data_dir, local_steps=2, finetune_steps=2).to_json())
    run_dir = tmp_path / "run"
    assert main(["simulate", str(path), "--run-dir", str(run_dir), "--engine", "inprocess", "--rounds", "1"]) == 0
    shown = capfd.readouterr()
    assert "metrics.jsonl" in shown.err.replace("\n", "") and "round 1: loss" in shown.err
    assert "eval_loss" not in shown.out + shown.err and "Map" not in shown.out + shown.err
    log = (run_dir / LOG_FILE).read_text()
    assert "eval_loss" in log and "operator round 1" in log


def test_reproduce_shows_its_progress_and_the_accuracy_of_every_method(shared_data_dir, tmp_path, capfd):
    work = tmp_path / "work"
    assert main(["reproduce", "tiny", "--data-dir", str(shared_data_dir), "--methods", "own-source", "--seeds", "0",
                 "--engine", "inprocess", "--output-dir", str(tmp_path / "results" / "tiny"), "--work-dir", str(work),
                 "--report", str(tmp_path / "RESULTS.md")]) == 0
    shown = capfd.readouterr()
    assert "Own source, fine-tuned" in shown.err and "mean common-test accuracy" in shown.err
    assert "eval_loss" not in shown.out + shown.err
    assert "tiny/own-source/seed 0: running" in (work / LOG_FILE).read_text()
