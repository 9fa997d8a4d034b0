"""Bad input to `fedgrow merge/card/push` ends in one clear line on stderr (no traceback); --debug shows it."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pytest
import torch
from safetensors.torch import load_file, save_file

from fedgrow_hf.cli import main


def _broken_adapter(bert_adapter_dir, tmp_path, problem: str):
    adapter = tmp_path / "adapter"
    shutil.copytree(bert_adapter_dir, adapter)
    config_file = adapter / "adapter_config.json"
    config = json.loads(config_file.read_text())
    if problem == "unknown_model_type":
        config["target_config"]["model_type"] = "no_such_architecture"
    elif problem == "unsupported_architecture":
        config["target_config"]["model_type"] = "roberta"
    elif problem == "mixed_architectures":
        config["target_config"]["model_type"] = "gpt2"
    elif problem == "incompatible_shapes":
        config["target_config"]["num_hidden_layers"] = 5  # the saved operator grows 3 layers
    elif problem == "missing_weights":
        (adapter / "adapter_model.safetensors").unlink()
    elif problem == "missing_source":
        config["source_model_name_or_path"] = str(tmp_path / "deleted-source")
    elif problem in ADAPTER_TENSOR_EDITS:
        weights_file = adapter / "adapter_model.safetensors"
        save_file(ADAPTER_TENSOR_EDITS[problem](load_file(str(weights_file))), str(weights_file))
    if problem == "unreadable_config":
        config_file.write_text("{ this is not json")
    else:
        config_file.write_text(json.dumps(config))
    return adapter


ADAPTER_TENSOR_EDITS = {
    "hostile_non_finite_weights": lambda w: {k: torch.full_like(v, float("nan")) for k, v in w.items()},
    "hostile_tensor_one_element_short": lambda w: {**w, sorted(w)[0]: w[sorted(w)[0]].flatten()[:-1]},
    "hostile_extra_key": lambda w: {**w, "base_model.model.extra.weight": torch.zeros(3)},
}
MERGE_PROBLEMS = {
    "hostile_non_finite_weights": "tensors hold NaN or infinite values (first: 'base_model.ligo_operator",
    "hostile_tensor_one_element_short": "has shape [95]: it needs at least 2 dimensions",
    "hostile_extra_key": "holds 1 tensors the adapter's model does not have (first: 'base_model.model.extra.weight')",
    "unknown_model_type": "unknown architecture",
    "unsupported_architecture": "LiGO has no role table for model_type 'roberta'",
    "mixed_architectures": "is a 'bert' model but the target is 'gpt2'; LiGO grows a model within its own architecture family",
    "incompatible_shapes": "does not fit",
    "missing_weights": "adapter_model.safetensors",
    "missing_source": "cannot load the LiGO source model",
    "unreadable_config": "cannot parse",
}


@pytest.mark.parametrize("problem", sorted(MERGE_PROBLEMS))
def test_merge_errors_are_one_line(bert_adapter_dir, tmp_path, capsys, problem):
    adapter = _broken_adapter(bert_adapter_dir, tmp_path, problem)
    assert main(["merge", str(adapter), str(tmp_path / "out")]) == 1
    err = capsys.readouterr().err
    last = err.strip().splitlines()[-1]  # above it at most transformers' own progress bars
    assert last.startswith("fedgrow merge: error:") and MERGE_PROBLEMS[problem] in last, err
    assert "Traceback" not in err
    assert not any((tmp_path / "out").glob("*.safetensors"))  # nothing written that looks like a model


def test_merge_into_an_existing_file_is_refused_and_writes_nothing(bert_adapter_dir, tmp_path, capsys, monkeypatch):
    """transformers' save_pretrained only logs for a file: the merge said "written" with rc 0."""
    from fedgrow_hf import export

    monkeypatch.setattr(export, "merge_adapter", lambda *a, **k: pytest.fail("the target was built"))
    output = tmp_path / "model.bin"
    output.write_bytes(b"mine")
    assert main(["merge", str(bert_adapter_dir), str(output)]) == 1
    err = capsys.readouterr().err
    assert err.strip() == f"fedgrow merge: error: {output} exists and is not a directory: the model cannot be written there"
    assert "merged model written" not in err and output.read_bytes() == b"mine"
    assert sorted(path.name for path in tmp_path.iterdir()) == ["model.bin"]


def test_merge_of_a_dir_that_is_no_adapter(tmp_path, capsys):
    (tmp_path / "model").mkdir()
    assert main(["merge", str(tmp_path / "model"), str(tmp_path / "out")]) == 1
    assert "has no adapter_config.json" in capsys.readouterr().err


def test_merge_of_a_hub_id_offline_is_one_line(tmp_path, capsys):
    assert main(["merge", "someone/ligo-adapter", str(tmp_path / "out")]) == 1  # conftest: HF_HUB_OFFLINE=1
    err = capsys.readouterr().err.strip()
    assert "HF_HUB_OFFLINE is set" in err and "'someone/ligo-adapter'" in err and "\n" not in err


def test_debug_shows_the_traceback(tmp_path):
    with pytest.raises(FileNotFoundError):
        main(["--debug", "card", str(tmp_path / "nowhere")])


def test_push_offline_is_one_line_and_writes_nothing(bert_adapter_dir, tmp_path, capsys):
    adapter = tmp_path / "adapter"
    shutil.copytree(bert_adapter_dir, adapter)
    before = (adapter / "README.md").read_text()
    assert main(["push", str(adapter), "me/ligo-adapter"]) == 1
    err = capsys.readouterr().err.strip()
    assert (
        err
        == f"fedgrow push: error: HF_HUB_OFFLINE is set: cannot push {adapter} to the Hub repository 'me/ligo-adapter'"
    )
    assert (adapter / "README.md").read_text() == before


@pytest.mark.slow  # huggingface_hub retries a refused connection with backoff (~10-40 s)
def test_push_to_an_unreachable_hub_is_one_line(bert_adapter_dir, tmp_path):
    env = {
        **os.environ,
        "HF_HUB_OFFLINE": "0",
        "HF_ENDPOINT": "http://127.0.0.1:9",
        "HF_TOKEN": "hf_not_a_real_token",
    }
    result = subprocess.run(
        [sys.executable, "-m", "fedgrow_hf.cli", "push", str(bert_adapter_dir), "me/ligo-adapter"],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith(
        "fedgrow push: error: cannot push to 'me/ligo-adapter' on the Hub at http://127.0.0.1:9"
    )
    assert "Connect" in last
