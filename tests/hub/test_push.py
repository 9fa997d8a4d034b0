"""`fedgrow push`: everything up to the Hub upload, which is huggingface_hub's own (captured here)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from huggingface_hub import HfApi, ModelCard, constants

from fedgrow_hf.cli import main
from fedgrow_hf.export import export_merged, load_grown


@pytest.fixture
def hub(monkeypatch, tmp_path):
    """Capture create_repo/upload_folder: the repo id and a copy of exactly the folder that would be sent."""
    sent: dict[str, object] = {}
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)

    def create_repo(self, repo_id, **kwargs):
        sent["created"] = (repo_id, kwargs.get("private"), kwargs.get("exist_ok"))
        return SimpleNamespace(repo_id=repo_id)

    def upload_folder(self, *, folder_path, repo_id, commit_message=None, **kwargs):
        sent["uploaded"] = shutil.copytree(folder_path, tmp_path / "sent" / repo_id.replace("/", "--"))
        sent["repo_id"], sent["message"] = repo_id, commit_message
        return SimpleNamespace(commit_url=f"https://huggingface.co/{repo_id}/commit/0123abc")

    monkeypatch.setattr(HfApi, "create_repo", create_repo)
    monkeypatch.setattr(HfApi, "upload_folder", upload_folder)
    return sent


def test_push_merged_model_with_card(bert_adapter_dir, tmp_path, hub, capsys):
    from transformers import AutoModelForSequenceClassification

    merged_dir = tmp_path / "merged"
    export_merged(bert_adapter_dir, merged_dir)
    results = tmp_path / "results.json"
    results.write_text(json.dumps({"eval_accuracy": 0.71875, "eval_loss": 0.61}))
    argv = [
        "push",
        str(merged_dir),
        "me/grown-bert",
        "--private",
        "--adapter",
        str(bert_adapter_dir),
        "--results",
        str(results),
        "--dataset",
        "stanfordnlp/sst2",
        "--parties",
        "2",
        "--rounds",
        "3",
    ]
    assert main(argv) == 0
    assert "https://huggingface.co/me/grown-bert/commit/0123abc" in capsys.readouterr().out
    assert hub["created"] == ("me/grown-bert", True, True)
    sent = Path(hub["uploaded"])
    assert {"config.json", "model.safetensors", "tokenizer_config.json", "README.md"} <= {
        p.name for p in sent.iterdir()
    }
    card = ModelCard.load(sent / "README.md")
    assert card.data.library_name == "transformers" and "ligo" in card.data.tags
    assert [(r.metric_type, r.metric_value) for r in card.data.eval_results] == [("accuracy", 0.71875)]
    assert "| 2 | 3 | not recorded |" in card.text
    # what was sent is the grown model itself
    with torch.no_grad():
        ids = torch.tensor([[101, 7592, 2088, 102]])
        sent_logits = AutoModelForSequenceClassification.from_pretrained(sent)(input_ids=ids).logits
        torch.testing.assert_close(sent_logits, load_grown(bert_adapter_dir)(input_ids=ids).logits)


def test_push_adapter_with_card(bert_adapter_dir, tmp_path, hub):
    adapter = tmp_path / "adapter"
    shutil.copytree(bert_adapter_dir, adapter)
    assert main(["push", str(adapter), "me/ligo-adapter"]) == 0
    sent = Path(hub["uploaded"])
    assert {p.name for p in sent.iterdir()} == {
        "adapter_config.json",
        "adapter_model.safetensors",
        "README.md",
    }
    card = ModelCard.load(sent / "README.md")
    assert card.data.library_name == "peft" and "fedgrow" in card.data.tags
    assert 'load_grown("me/ligo-adapter")' in card.text
    # the sent adapter rebuilds the same grown model (PeftModel.from_pretrained after import fedgrow_hf)
    ids = torch.tensor([[101, 2023, 102]])
    with torch.no_grad():
        torch.testing.assert_close(
            load_grown(sent)(input_ids=ids).logits, load_grown(bert_adapter_dir)(input_ids=ids).logits
        )
