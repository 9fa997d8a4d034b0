"""An adapter whose config claims sizes its saved operator does not have is refused before anything
is allocated: hidden_size=16384 used 16 GB before failing, 10**6 layers ran for minutes."""

from __future__ import annotations

import json
import shutil
import time

import pytest
import torch
from transformers import BertConfig, BertForSequenceClassification

import fedgrow_hf
from fedgrow_hf import export
from fedgrow_hf.architectures import get_architecture_table
from fedgrow_hf.cli import main
from fedgrow_hf.tuners.ligo import GrowthShapeError
from fedgrow_hf.tuners.ligo.saved import check_saved_shapes, stage_sizes

INTERMEDIATE = {"num_hidden_layers": 2, "hidden_size": 32, "intermediate_size": 64, "num_attention_heads": 4}


@pytest.fixture(scope="module")
def dual_adapter_dir(tmp_path_factory, bert_source_dir):
    """A Dual-LiGO adapter: tiny BERT (L2-H32) -> intermediate L2-H32 -> target L3-H64."""
    target = BertConfig(num_hidden_layers=3, hidden_size=64, num_attention_heads=8, intermediate_size=128,
                        max_position_embeddings=64, num_labels=2)
    model = fedgrow_hf.grow(str(bert_source_dir), target, model_class=BertForSequenceClassification,
                            intermediate_config=INTERMEDIATE, modules_to_save=["classifier"])
    path = tmp_path_factory.mktemp("dual_adapter")
    model.save_pretrained(path)
    return path


@pytest.fixture
def nothing_is_built(monkeypatch):
    """Building the target (the first allocation of a load) fails the test."""
    monkeypatch.setattr(export, "target_model_class", lambda config: pytest.fail("the target was built"))


def _edited(adapter_dir, tmp_path, section: str, field: str, value: int):
    adapter = tmp_path / "adapter"
    shutil.copytree(adapter_dir, adapter)
    config_file = adapter / "adapter_config.json"
    config = json.loads(config_file.read_text())
    config[section][field] = value
    config_file.write_text(json.dumps(config))
    return adapter


@pytest.mark.parametrize(
    ("field", "value", "saved"),
    [("hidden_size", 16384, 64), ("num_hidden_layers", 10**6, 3), ("intermediate_size", 2**20, 128)],
)
def test_a_target_size_the_operator_lacks_is_refused_before_allocation(
    bert_adapter_dir, tmp_path, capsys, nothing_is_built, field, value, saved
):
    adapter = _edited(bert_adapter_dir, tmp_path, "target_config", field, value)
    started = time.monotonic()
    assert main(["merge", str(adapter), str(tmp_path / "out")]) == 1
    assert time.monotonic() - started < 30
    err = capsys.readouterr().err.strip()
    assert err == (
        f"fedgrow merge: error: the adapter's target_config.{field}={value} does not fit the saved operator, "
        f"whose global_stage grows into {saved}"
    )
    assert not (tmp_path / "out").exists()


def test_an_intermediate_size_the_operator_lacks_is_refused(dual_adapter_dir, tmp_path, nothing_is_built):
    adapter = _edited(dual_adapter_dir, tmp_path, "intermediate_config", "hidden_size", 4096)
    with pytest.raises(GrowthShapeError, match=r"intermediate_config.hidden_size=4096 does not fit .* grows from 32"):
        export.load_grown(adapter)


def test_a_missing_operator_tensor_is_named(bert_adapter_dir):
    shapes = export.saved_shapes(bert_adapter_dir / "adapter_model.safetensors")
    shapes = {key: shape for key, shape in shapes.items() if not key.endswith("global_stage.depth")}
    config = export.read_ligo_config(bert_adapter_dir)
    table = get_architecture_table(export.target_config_of(config))
    with pytest.raises(GrowthShapeError, match="has no global_stage.depth"):
        check_saved_shapes(config, table, shapes)


@pytest.mark.parametrize("adapter", ["bert_adapter_dir", "vit_adapter_dir", "dual_adapter_dir"])
def test_intact_adapters_pass_and_their_saved_sizes_are_the_configs(adapter, request):
    adapter_dir = request.getfixturevalue(adapter)
    config = export.read_ligo_config(adapter_dir)
    table = get_architecture_table(export.target_config_of(config))
    shapes = export.saved_shapes(adapter_dir / "adapter_model.safetensors")
    check_saved_shapes(config, table, shapes)
    target = config.target_config
    sizes = stage_sizes(shapes, "global_stage")
    assert [grown for grown, _ in sizes.values()] == [
        target["num_hidden_layers"], target["hidden_size"], target["intermediate_size"]
    ]
    if config.is_dual:
        assert [source for _, source in sizes.values()] == [INTERMEDIATE[k] for k in
                                                            ("num_hidden_layers", "hidden_size", "intermediate_size")]


def test_an_intact_dual_adapter_still_loads(dual_adapter_dir, bert_source_dir):
    model = export.load_grown(dual_adapter_dir, sources=[bert_source_dir])
    assert model.base_model.operator.global_stage.target_shape.hidden == 64
    assert torch.isfinite(next(iter(model.base_model.operator.global_stage.parameters()))).all()
