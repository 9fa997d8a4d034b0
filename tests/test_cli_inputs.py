"""`fedgrow grow` inputs that used to train for epochs, write an untrained adapter or fail late:
each is one line on stderr with rc 1, before any model is built, and nothing is written."""

from __future__ import annotations

import json

import pytest

from fedgrow_hf import recipe
from fedgrow_hf.cli import grow as grow_command
from fedgrow_hf.cli import main
from fedgrow_hf.experiment import models
from fedgrow_hf.recipe import TrainingSchedule
from tests.test_cli_grow import TARGET, write_tsv


@pytest.fixture
def no_growth(monkeypatch):
    """Growing fails the test: the errors below must come before any model is built."""

    def refuse(*args, **kwargs):
        raise AssertionError("a model was built")

    monkeypatch.setattr(models, "grow", refuse)


@pytest.fixture
def two_classes(tmp_path):
    return write_tsv(tmp_path / "train.tsv", [f"sentence {i}" for i in range(10)], ["0", "1"] * 5)


def _grow(source, data, output, *options: str) -> int:
    arguments = ["grow", "--source", str(source), "--target", json.dumps(TARGET), "--output-dir", str(output)]
    return main([*arguments, *(["--data", str(data)] if data else []), *options])


def _last_error_line(capsys) -> str:
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return err.strip().splitlines()[-1]


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (["--max-steps", "-1"], "--max-steps must be >= 1, got -1"),  # transformers would train 3 epochs
        (["--max-steps", "0"], "--max-steps must be >= 1, got 0"),  # an untrained adapter, rc 0
        (["--finetune-steps", "-3"], "--finetune-steps must be >= 0, got -3"),
        (["--batch-size", "0"], "--batch-size must be >= 1, got 0"),
        (["--limit", "0"], "--limit must be >= 1, got 0"),
        (["--eval-limit", "-2"], "--eval-limit must be >= 1, got -2"),
        (["--max-length", "0"], "--max-length must be >= 1, got 0"),
    ],
)
def test_a_count_below_its_least_value_is_one_line(tmp_path, tiny_source, two_classes, capsys, no_growth, options, message):
    assert _grow(tiny_source, two_classes, tmp_path / "out", *options) == 1
    last = _last_error_line(capsys)
    assert last == f"fedgrow grow: error: {message}"
    assert not (tmp_path / "out").exists()


def test_zero_steps_is_refused_without_data_too(tmp_path, tiny_source, capsys, no_growth):
    assert _grow(tiny_source, None, tmp_path / "out", "--max-steps", "0") == 1
    assert "--max-steps must be >= 1, got 0" in _last_error_line(capsys)


@pytest.mark.parametrize("data", [False, True])
def test_an_output_dir_that_is_a_file_is_refused_first(tmp_path, tiny_source, two_classes, capsys, no_growth, data):
    output = tmp_path / "model.txt"
    output.write_text("mine")
    assert _grow(tiny_source, two_classes if data else None, output) == 1
    last = _last_error_line(capsys)
    assert last.startswith("fedgrow grow: error:") and "exists and is not a directory" in last
    assert output.read_text() == "mine"


def test_an_output_dir_under_a_file_is_refused(tmp_path, tiny_source, capsys, no_growth):
    (tmp_path / "file").write_text("mine")
    assert _grow(tiny_source, None, tmp_path / "file" / "out") == 1
    assert f"cannot be created: {tmp_path / 'file'} is not a directory" in _last_error_line(capsys)


@pytest.mark.parametrize(("labels", "names"), [(["1", "2"], ["1", "2"]), (["0", "7"], ["0", "7"])])
def test_integer_labels_outside_0_to_k_become_class_ids_named_by_their_values(
    tmp_path, tiny_source, monkeypatch, labels, names
):
    """{1, 2} or {0, 7} train as classes 0..K-1 whose names are the values (the model's id2label)."""
    seen = {}

    def record(source, target_config, train, evaluation, **kwargs):
        seen.update(train=train, evaluation=evaluation)
        raise SystemExit("recorded")

    monkeypatch.setattr(grow_command, "grow_and_train", record)
    data = write_tsv(tmp_path / "train.tsv", [f"sentence {i}" for i in range(20)], labels * 10)
    with pytest.raises(SystemExit, match="recorded"):
        _grow(tiny_source, data, tmp_path / "out")
    for split in seen.values():
        assert split.features["labels"].names == names
        assert {int(label) for label in split["labels"]} == {0, 1}
    assert recipe.class_names(seen["train"], seen["evaluation"]) == names


def test_schedule_refuses_an_operator_phase_without_steps():
    with pytest.raises(ValueError, match="operator_steps must be >= 1, got 0"):
        TrainingSchedule(operator_steps=0)
    assert TrainingSchedule(finetune_steps=0).finetune_steps == 0  # documented: stop after the operator phase
