"""StreamedCheckpoint: safetensors files written tensor by tensor read back as ``save_file`` would write them."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file

from fedgrow_hf.checkpoint_writer import StreamedCheckpoint

TENSORS = {
    "a.weight": torch.randn(3, 5),
    "b.weight": torch.randn(7).to(torch.bfloat16),
    "c.ids": torch.arange(6, dtype=torch.int64).reshape(2, 3),
    "d.mask": torch.tensor([True, False, True]),
}


def _layout(tensors):
    return {name: (tuple(value.shape), value.dtype) for name, value in tensors.items()}


def test_tensors_written_in_any_order_read_back_exactly(tmp_path):
    with StreamedCheckpoint(tmp_path, _layout(TENSORS), metadata={"source": "test"}) as checkpoint:
        for name in reversed(list(TENSORS)):
            checkpoint.write(name, TENSORS[name])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.safetensors"]
    loaded = load_file(tmp_path / "model.safetensors")
    assert loaded.keys() == TENSORS.keys()
    for name, value in TENSORS.items():
        assert loaded[name].dtype == value.dtype and torch.equal(loaded[name], value), name
    with safe_open(tmp_path / "model.safetensors", framework="pt") as handle:
        assert handle.metadata() == {"format": "pt", "source": "test"}


def test_writes_cast_to_the_announced_dtype(tmp_path):
    value = torch.randn(4, 4)
    with StreamedCheckpoint(tmp_path, {"w": ((4, 4), torch.bfloat16)}) as checkpoint:
        checkpoint.write("w", value)
    assert torch.equal(load_file(tmp_path / "model.safetensors")["w"], value.to(torch.bfloat16))


def test_shards_and_index_past_max_shard_size(tmp_path):
    layout = _layout(TENSORS)
    with StreamedCheckpoint(tmp_path, layout, max_shard_size=80) as checkpoint:
        for name, value in TENSORS.items():
            checkpoint.write(name, value)
    index = json.loads((tmp_path / "model.safetensors.index.json").read_text())
    files = sorted(set(index["weight_map"].values()))
    assert files == [f"model-{i:05d}-of-{len(files):05d}.safetensors" for i in range(1, len(files) + 1)]
    assert len(files) == 2  # 60 + 14 bytes, then 48 + 3
    assert index["metadata"]["total_size"] == sum(v.numel() * v.element_size() for v in TENSORS.values())
    for name, value in TENSORS.items():
        assert torch.equal(load_file(tmp_path / index["weight_map"][name])[name], value)


def test_an_incomplete_checkpoint_keeps_the_old_one_and_leaves_no_partial_file(tmp_path):
    (tmp_path / "model.safetensors").write_bytes(b"old")
    with pytest.raises(RuntimeError, match=r"never written.*b\.weight"):
        with StreamedCheckpoint(tmp_path, _layout(TENSORS)) as checkpoint:
            for name in ("a.weight", "c.ids", "d.mask"):
                checkpoint.write(name, TENSORS[name])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.safetensors"]
    assert (tmp_path / "model.safetensors").read_bytes() == b"old"


def test_an_error_while_writing_keeps_the_old_checkpoint(tmp_path):
    (tmp_path / "model.safetensors").write_bytes(b"old")
    with pytest.raises(ValueError, match="shape"):
        with StreamedCheckpoint(tmp_path, _layout(TENSORS)) as checkpoint:
            checkpoint.write("a.weight", torch.zeros(5, 3))
    assert (tmp_path / "model.safetensors").read_bytes() == b"old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.safetensors"]


def test_unknown_and_repeated_names_are_refused(tmp_path):
    with StreamedCheckpoint(tmp_path, {"w": ((2,), torch.float32)}) as checkpoint:
        with pytest.raises(KeyError, match="not a tensor"):
            checkpoint.write("v", torch.zeros(2))
        checkpoint.write("w", torch.zeros(2))
        with pytest.raises(ValueError, match="already written"):
            checkpoint.write("w", torch.ones(2))
    assert torch.equal(load_file(tmp_path / "model.safetensors")["w"], torch.zeros(2))
