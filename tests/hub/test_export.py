"""Low-memory export: the merged model equals the grown PeftModel, in any dtype and placement."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch
from safetensors import safe_open

from fedgrow_hf.export import export_merged, load_grown, merge_adapter, write_merged

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


@pytest.mark.parametrize("max_shard_size", [None, 200_000])
def test_write_merged_streams_the_model_merge_adapter_builds(bert_adapter_dir, tmp_path, max_shard_size):
    """Exactly the tensors ``merge_adapter(...).save_pretrained`` writes: one file, or shards with an index."""
    from transformers import AutoModelForSequenceClassification

    out = tmp_path / "streamed"
    out.mkdir()
    (out / "model.safetensors").write_bytes(b"a stale checkpoint that from_pretrained would read first")
    options = {} if max_shard_size is None else {"max_shard_size": max_shard_size}
    assert write_merged(bert_adapter_dir, out, **options) == out
    assert not list(out.glob(".partial-*"))
    if max_shard_size is None:
        assert not (out / "model.safetensors.index.json").exists()
    else:
        assert not (out / "model.safetensors").exists()
        shards = sorted(set(json.loads((out / "model.safetensors.index.json").read_text())["weight_map"].values()))
        assert len(shards) > 2
        assert shards == [f"model-{i:05d}-of-{len(shards):05d}.safetensors" for i in range(1, len(shards) + 1)]

    streamed = AutoModelForSequenceClassification.from_pretrained(out)
    expected = merge_adapter(bert_adapter_dir).state_dict()
    assert streamed.state_dict().keys() == expected.keys()
    for name, value in streamed.state_dict().items():
        torch.testing.assert_close(value, expected[name], rtol=0, atol=0, msg=name)
    assert json.loads((out / "config.json").read_text())["architectures"] == ["BertForSequenceClassification"]


def test_write_merged_writes_tied_weights_once_and_they_reload_tied(bert_source_dir, tmp_path):
    from transformers import AutoConfig, BertForMaskedLM

    import fedgrow_hf

    target = AutoConfig.from_pretrained(bert_source_dir)
    target.update({"num_hidden_layers": 3, "hidden_size": 64, "num_attention_heads": 8, "intermediate_size": 128})
    adapter = tmp_path / "adapter"
    fedgrow_hf.grow(str(bert_source_dir), target, model_class=BertForMaskedLM, init_noise_std=0.05,
                    record_source_paths=True).save_pretrained(adapter)

    out = write_merged(adapter, tmp_path / "mlm", dtype="bfloat16")
    with safe_open(out / "model.safetensors", framework="pt") as weights:
        names = set(weights.keys())
    assert "bert.embeddings.word_embeddings.weight" in names and "cls.predictions.decoder.weight" not in names
    merged = BertForMaskedLM.from_pretrained(out, dtype="auto")
    assert merged.dtype == torch.bfloat16
    assert merged.cls.predictions.decoder.weight is merged.bert.embeddings.word_embeddings.weight
    torch.testing.assert_close(_logits(merged).float(), _logits(load_grown(adapter)), atol=3e-2, rtol=3e-2)
