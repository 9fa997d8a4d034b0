"""Low-memory export: the merged model equals the grown PeftModel, in any dtype and placement."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch

from fedgrow_hf.export import export_merged, load_grown, merge_adapter

TOKENS = {"input_ids": torch.tensor([[101, 7592, 2088, 2003, 2307, 102], [101, 2023, 3185, 2001, 2919, 102]])}


def _logits(model, batch=TOKENS) -> torch.Tensor:
    with torch.no_grad():
        return model(**batch).logits


def test_merge_adapter_equals_the_grown_peft_model(bert_adapter_dir):
    reference = _logits(load_grown(bert_adapter_dir))
    merged = merge_adapter(bert_adapter_dir)
    assert type(merged).__name__ == "BertForSequenceClassification"
    assert not any(p.device.type == "meta" for p in merged.parameters())
    torch.testing.assert_close(_logits(merged), reference)
    # the lead's in-memory merge gives the same model
    torch.testing.assert_close(_logits(load_grown(bert_adapter_dir).merge_and_unload()), reference)


def test_merge_adapter_in_bfloat16(bert_adapter_dir):
    reference = _logits(load_grown(bert_adapter_dir))
    merged = merge_adapter(bert_adapter_dir, dtype="bfloat16")
    assert {p.dtype for p in merged.parameters()} == {torch.bfloat16}
    torch.testing.assert_close(_logits(merged).float(), reference, atol=3e-2, rtol=3e-2)


def test_auto_device_map_offloads_to_disk_and_saves(bert_adapter_dir, tmp_path):
    from transformers import AutoModelForSequenceClassification

    reference = _logits(load_grown(bert_adapter_dir))
    # a CPU budget below the model's size: accelerate puts the rest on disk
    merged = merge_adapter(
        bert_adapter_dir, device_map="auto", max_memory={"cpu": "8MB"}, offload_folder=tmp_path / "offload"
    )
    assert "disk" in merged.hf_device_map.values() and "cpu" in merged.hf_device_map.values()
    assert any(p.device.type == "meta" for p in merged.parameters())  # really offloaded
    assert (tmp_path / "offload" / "index.json").is_file()
    torch.testing.assert_close(_logits(merged), reference)
    merged.save_pretrained(tmp_path / "saved")
    torch.testing.assert_close(
        _logits(AutoModelForSequenceClassification.from_pretrained(tmp_path / "saved")), reference
    )


def test_vit_adapter_without_task_type_uses_auto_mapping(vit_adapter_dir):
    pixels = {"pixel_values": torch.randn(2, 1, 16, 16, generator=torch.Generator().manual_seed(0))}
    merged = merge_adapter(vit_adapter_dir)
    assert type(merged).__name__ == "ViTForImageClassification"
    torch.testing.assert_close(_logits(merged, pixels), _logits(load_grown(vit_adapter_dir), pixels))


LOAD_WITHOUT_FEDGROW = """
import json, sys, torch
from transformers import AutoModelForSequenceClassification, AutoTokenizer
model = AutoModelForSequenceClassification.from_pretrained(sys.argv[1]).eval()
batch = AutoTokenizer.from_pretrained(sys.argv[1])(["hello world", "a bad movie"], return_tensors="pt", padding=True)
with torch.no_grad():
    logits = model(**batch).logits
assert not any(name.startswith("fedgrow_hf") for name in sys.modules), "fedgrow_hf was imported"
print(json.dumps({"ids": batch["input_ids"].tolist(), "mask": batch["attention_mask"].tolist(), "logits": logits.tolist()}))
"""


def test_exported_dir_loads_with_plain_transformers(bert_adapter_dir, tmp_path):
    out = tmp_path / "merged"
    export_merged(bert_adapter_dir, out)
    assert (out / "config.json").is_file() and (out / "tokenizer_config.json").is_file()
    result = subprocess.run(
        [sys.executable, "-c", LOAD_WITHOUT_FEDGROW, str(out)],
        capture_output=True,
        text=True,
        timeout=120,
        env={**__import__("os").environ, "HF_HUB_OFFLINE": "1"},
    )
    assert result.returncode == 0, result.stderr[-2000:]
    loaded = json.loads(result.stdout.strip().splitlines()[-1])
    batch = {"input_ids": torch.tensor(loaded["ids"]), "attention_mask": torch.tensor(loaded["mask"])}
    torch.testing.assert_close(torch.tensor(loaded["logits"]), _logits(load_grown(bert_adapter_dir), batch))


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_cli_merge_writes_a_model_dir(bert_adapter_dir, tmp_path, dtype, capsys):
    from transformers import AutoModelForSequenceClassification

    from fedgrow_hf.cli import main

    assert main(["merge", str(bert_adapter_dir), str(tmp_path / "out"), "--dtype", dtype]) == 0
    assert "merged model written to" in capsys.readouterr().out
    model = AutoModelForSequenceClassification.from_pretrained(tmp_path / "out", dtype="auto")
    assert model.dtype == getattr(torch, dtype)
    expected = _logits(load_grown(bert_adapter_dir))
    torch.testing.assert_close(
        _logits(model).float(), expected, atol=3e-2 if dtype == "bfloat16" else 1e-5, rtol=3e-2
    )
