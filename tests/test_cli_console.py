"""``fedgrow simulate`` and ``fedgrow reproduce`` show one progress display and the results; what parties and
libraries print goes to the run folder's log, or with ``--verbose`` to the console."""

from __future__ import annotations

import gc
import os
import subprocess
import sys

import pytest

from fedgrow_hf.cli import main
from fedgrow_hf.cli.console import LOG_FILE, run_console
from fedgrow_hf.reproduce.results import PARTITIONED_KIND, RESULTS_KIND
from tests.federated.conftest import TINY_CONFIG

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


def _a_round(phase: str, round_number: int) -> dict:
    return {"phase": phase, "round": round_number, "loss": 0.65, "accuracy": 0.68,
            "parties": {"0": {"bytes_up": 1024, "bytes_down": 1024}}}


def test_simulate_shows_its_progress_and_logs_the_parties(tmp_path, capfd, monkeypatch):
    """The command around a federation (stood in for by one that prints as the parties do): the console holds the
    progress display and where the results are; the parties' output, and each round's line, is in the log. By
    the time the federation runs, what the process held is out of the collector's reach (fedgrow_hf/process.py)."""
    from fedgrow_hf.federated import simulate as federation

    garbage = [[] for _ in range(1000)]  # held, tracked, not yet frozen
    frozen_before = gc.get_freeze_count()

    def federate(config, run_dir, *, on_round, **options):
        assert gc.get_freeze_count() >= frozen_before + len(garbage)
        _print_like_a_library()
        on_round(_a_round("operator", 1))
        on_round(_a_round("finetune-local", 1))

    monkeypatch.setattr(federation, "simulate", federate)
    run_dir = tmp_path / "run"
    assert main(["simulate", str(TINY_CONFIG), "--run-dir", str(run_dir), "--rounds", "1"]) == 0
    shown = capfd.readouterr()
    assert "metrics.jsonl" in shown.err.replace("\n", "") and "finetune-local round 1: loss 0.6500" in shown.err
    assert "eval_loss" not in shown.out + shown.err and "child line" not in shown.out + shown.err
    log = (run_dir / LOG_FILE).read_text()
    assert "eval_loss" in log and "child line" in log and "operator round 1: loss 0.6500 acc 0.680" in log


def test_reproduce_shows_its_progress_and_the_accuracy_of_every_method(shared_data_dir, tmp_path, capfd, monkeypatch):
    import fedgrow_hf.reproduce

    def compare(comparison, *, log, **options):
        _print_like_a_library()
        log(f"{comparison.config.name}/own-source/seed 0: running")
        accuracy = {"mean": 0.5, "std": 0.01}
        return {"kind": RESULTS_KIND, "preset": comparison.config.name,
                "methods": {"own-source": {"label": "Own source, fine-tuned", "test_accuracy": accuracy}}}

    monkeypatch.setattr(fedgrow_hf.reproduce, "reproduce", compare)
    work = tmp_path / "work"
    assert main(["reproduce", "tiny", "--data-dir", str(shared_data_dir), "--work-dir", str(work)]) == 0
    shown = capfd.readouterr()
    assert "Own source, fine-tuned" in shown.err and "0.5000 ± 0.0100" in shown.err
    assert "eval_loss" not in shown.out + shown.err
    assert "tiny/own-source/seed 0: running" in (work / LOG_FILE).read_text()

    def one_partition(comparison, *, log, partitions, **options):  # what --partitions returns: no results.json
        figures = {"own-source": {"label": "Own source, fine-tuned", "test_accuracy": {"mean": 0.25, "std": None}}}
        return {"kind": PARTITIONED_KIND, "preset": comparison.config.name,
                "partitions": {name: {"methods": figures} for name in partitions}}

    monkeypatch.setattr(fedgrow_hf.reproduce, "reproduce", one_partition)
    assert main(["reproduce", "paper-agnews", "--data-dir", str(shared_data_dir), "--work-dir", str(work),
                 "--partitions", "iid"]) == 0
    shown = capfd.readouterr().err
    assert "Own source, fine-tuned" in shown and "0.2500" in shown


def test_the_check_runs_before_the_run_folder_exists_and_its_output_reaches_the_log(tmp_path, capfd):
    """A run refused by its check (bad data) leaves no folder; a passing check's output is logged, not shown."""
    def refuse() -> None:
        print("loading the data")
        raise ValueError("label 7 is not a class id")

    with pytest.raises(ValueError, match="label 7"), run_console(tmp_path / "refused", verbose=False, check=refuse):
        pass
    assert not (tmp_path / "refused").exists()
    with run_console(tmp_path / "run", verbose=False, check=lambda: print("loading the data")) as console:
        assert (tmp_path / "run").is_dir()
        console.print("progress")
    assert "loading the data" in (tmp_path / "run" / LOG_FILE).read_text()
    assert "loading the data" not in capfd.readouterr().out
