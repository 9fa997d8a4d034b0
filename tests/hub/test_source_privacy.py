"""A saved adapter and its cards name local sources and data, they do not reveal local paths (which
`fedgrow push` would upload) -- unless the user asks with record_source_paths / --record-local-paths."""

from __future__ import annotations

import json

import pytest
from transformers import AutoConfig, BertForSequenceClassification

import fedgrow_hf
from fedgrow_hf import recipe
from fedgrow_hf.cli import main
from fedgrow_hf.export import read_ligo_config
from fedgrow_hf.tuners.ligo import LiGOConfig
from fedgrow_hf.tuners.ligo.config import source_name

TARGET = {"num_hidden_layers": 3, "hidden_size": 64, "num_attention_heads": 8, "intermediate_size": 128}


def _grown(source_dir, **ligo):
    target = AutoConfig.from_pretrained(source_dir)
    target.update({**TARGET, "num_labels": 2})
    return fedgrow_hf.grow(str(source_dir), target, model_class=BertForSequenceClassification,
                           task_type="SEQ_CLS", modules_to_save=["classifier"], **ligo)


@pytest.fixture(scope="module")
def private_adapter(tmp_path_factory, bert_source_dir):
    """An adapter saved the default way, by ``recipe.save_adapter`` (with the project's card)."""
    model = _grown(bert_source_dir)
    path = tmp_path_factory.mktemp("private") / "adapter"
    recipe.save_adapter(model, path)
    assert model.peft_config["default"].source_model_name_or_path == str(bert_source_dir.resolve())  # kept in memory
    return path


def _written(directory) -> str:
    return "\n".join(path.read_text() for path in directory.iterdir() if path.suffix in (".json", ".md"))


def test_the_adapter_and_its_card_name_the_source_without_its_path(private_adapter, bert_source_dir):
    config = json.loads((private_adapter / "adapter_config.json").read_text())
    assert config["source_model_name_or_path"] == bert_source_dir.name
    assert config["record_source_paths"] is False
    assert str(bert_source_dir.parent) not in _written(private_adapter)
    card = (private_adapter / "README.md").read_text()
    assert f"| `{bert_source_dir.name}` | source | 2 | 32 | 4 | 64 |" in card  # shape read from the real source


def test_the_saved_config_round_trips(private_adapter, bert_source_dir):
    config = read_ligo_config(private_adapter)
    assert isinstance(config, LiGOConfig) and config.source_paths == [bert_source_dir.name]
    assert LiGOConfig.from_peft_type(**json.loads(json.dumps(config.to_dict()))).to_dict() == config.to_dict()


def test_merging_needs_the_sources_location_and_says_so(private_adapter, bert_source_dir, tmp_path, capsys):
    assert main(["merge", str(private_adapter), str(tmp_path / "out")]) == 1
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith("fedgrow merge: error: cannot load the LiGO source model") and "--source DIR" in err
    assert not (tmp_path / "out").exists()
    assert main(["merge", str(private_adapter), str(tmp_path / "out"), "--source", str(bert_source_dir)]) == 0
    assert (tmp_path / "out" / "config.json").is_file() and (tmp_path / "out" / "tokenizer.json").is_file()
    assert str(bert_source_dir.parent) not in _written(tmp_path / "out")


def test_a_wrong_number_of_locations_is_named(private_adapter, bert_source_dir):
    with pytest.raises(ValueError, match=r"grows 1 source\(s\) .* but 2 location\(s\) were given"):
        read_ligo_config(private_adapter, [bert_source_dir, bert_source_dir])


def test_the_path_is_recorded_when_asked(bert_source_dir, tmp_path):
    model = _grown(bert_source_dir, record_source_paths=True)
    model.save_pretrained(tmp_path / "adapter")
    config = json.loads((tmp_path / "adapter" / "adapter_config.json").read_text())
    assert config["source_model_name_or_path"] == str(bert_source_dir.resolve())


def test_hub_ids_are_names_already(tmp_path, monkeypatch):
    assert source_name("sentence-transformers/all-MiniLM-L6-v2") == "sentence-transformers/all-MiniLM-L6-v2"
    (tmp_path / "models" / "mini").mkdir(parents=True)
    monkeypatch.chdir(tmp_path)
    assert source_name("models/mini") == "mini" and source_name(str(tmp_path / "models" / "mini")) == "mini"


def test_fedgrow_grow_writes_names_by_default_and_paths_on_request(bert_source_dir, tmp_path, shared_data_dir):
    data = tmp_path / "private-data" / "train.tsv"
    data.parent.mkdir()
    lines = (shared_data_dir / "sst2" / "train.tsv").read_text().splitlines()[:41]
    data.write_text("\n".join(lines) + "\n")
    common = ["grow", "--source", str(bert_source_dir), "--target", json.dumps(TARGET), "--data", str(data),
              "--max-steps", "1", "--finetune-steps", "0", "--batch-size", "8", "--max-length", "16"]
    assert main([*common, "--output-dir", str(tmp_path / "named")]) == 0
    written = _written(tmp_path / "named")
    assert str(bert_source_dir.parent) not in written and str(data.parent) not in written
    assert "train.tsv" in (tmp_path / "named" / "README.md").read_text()

    assert main([*common, "--output-dir", str(tmp_path / "recorded"), "--record-local-paths"]) == 0
    written = _written(tmp_path / "recorded")
    assert str(bert_source_dir.resolve()) in written and str(data) in written
