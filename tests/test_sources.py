"""Source models: BERTs derived from the real MiniLM, short distillation, cached tiny-ViT pretraining."""

from __future__ import annotations

import datasets
import pytest
import torch
from transformers import AutoModel, AutoTokenizer, BertModel, ViTConfig, ViTForImageClassification

from fedgrow_hf import ModelShape, grow
from fedgrow_hf.data import load_image_classification, load_text_classification, resize_images
from fedgrow_hf.sources import (
    SourceDerivationError,
    derive_bert_source,
    distill_bert_source,
    distillation_loss,
    distilled_bert_source,
    evenly_spaced_layers,
    pretrain_vit_source,
)


@pytest.fixture(scope="module")
def minilm(minilm_path):
    return BertModel.from_pretrained(minilm_path).eval()


@pytest.fixture(scope="module")
def tokenizer(minilm_path):
    return AutoTokenizer.from_pretrained(minilm_path)


@pytest.fixture(scope="module")
def sentences(shared_data_dir):
    return load_text_classification(str(shared_data_dir / "sst2"), "train", limit=64, seed=0)["text"]


def hidden_states(model, batch):
    with torch.no_grad():
        return model(**batch).last_hidden_state


def test_evenly_spaced_layers_keep_first_and_last():
    assert evenly_spaced_layers(6, 3) == [0, 2, 5]
    assert evenly_spaced_layers(6, 2) == [0, 5]
    assert evenly_spaced_layers(6, 6) == list(range(6))


def test_full_size_derivation_reproduces_minilm(minilm, tokenizer, sentences):
    derived = derive_bert_source(minilm)
    batch = dict(tokenizer(sentences[:4], padding=True, return_tensors="pt"))
    torch.testing.assert_close(hidden_states(derived, batch), hidden_states(minilm, batch))


def test_layer_drop_keeps_embeddings_and_chosen_layers(minilm):
    derived = derive_bert_source(minilm, num_hidden_layers=3)
    assert derived.config.fedgrow_derivation["layers"] == [0, 2, 5]
    parent, child = minilm.state_dict(), derived.state_dict()
    for name in ("embeddings.word_embeddings.weight", "embeddings.LayerNorm.weight", "pooler.dense.weight"):
        torch.testing.assert_close(child[name], parent[name], rtol=0, atol=0)
    for new, old in enumerate([0, 2, 5]):
        key = "encoder.layer.{}.intermediate.dense.weight"
        torch.testing.assert_close(child[key.format(new)], parent[key.format(old)], rtol=0, atol=0)


def test_width_pruned_source_has_the_asked_config_and_runs(
    minilm, tokenizer, sentences, tmp_path, minilm_path
):
    derived = derive_bert_source(
        str(minilm_path), num_hidden_layers=2, hidden_size=128, intermediate_size=256, output_dir=tmp_path
    )
    config = derived.config
    shape = (
        config.num_hidden_layers,
        config.hidden_size,
        config.num_attention_heads,
        config.intermediate_size,
    )
    assert shape == (2, 128, 4, 256)
    record = config.fedgrow_derivation
    assert len(record["residual_dims"]) == 128 and record["residual_dims"] == sorted(record["residual_dims"])
    assert all(len(heads) == 4 for heads in record["heads"].values())
    # kept residual dims are consistent: the word embedding is the parent's at exactly those columns
    torch.testing.assert_close(
        derived.embeddings.word_embeddings.weight,
        minilm.embeddings.word_embeddings.weight[:, record["residual_dims"]],
    )
    # residual dims and head dims are told apart even where both are 128 wide (4 heads x 32)
    kept_heads = torch.tensor(record["heads"]["5"])
    head_dims = (kept_heads[:, None] * 32 + torch.arange(32)).reshape(-1)
    parent_out = minilm.encoder.layer[5].attention.output.dense.weight
    torch.testing.assert_close(
        derived.encoder.layer[1].attention.output.dense.weight,
        parent_out[record["residual_dims"]][:, head_dims],
    )
    reloaded = AutoModel.from_pretrained(tmp_path).eval()
    batch = dict(AutoTokenizer.from_pretrained(tmp_path)(sentences[:3], padding=True, return_tensors="pt"))
    states = hidden_states(reloaded, batch)
    assert states.shape[-1] == 128 and torch.isfinite(states).all()
    torch.testing.assert_close(states, hidden_states(derived, batch))


def test_derived_source_grows_with_ligo(minilm, tokenizer, sentences):
    source = derive_bert_source(minilm, num_hidden_layers=2, hidden_size=64)
    target = source.config.to_dict() | {"num_hidden_layers": 3, "hidden_size": 128, "num_attention_heads": 4}
    target.pop("fedgrow_derivation")
    model = grow(source, type(source.config)(**target), model_class=BertModel)
    assert model.base_model.operator.global_stage.source_shape == ModelShape(2, 64, 256, 2)
    grown = model.merge_and_unload(progressbar=False)
    states = hidden_states(grown.eval(), dict(tokenizer(sentences[:2], padding=True, return_tensors="pt")))
    assert states.shape[-1] == 128 and torch.isfinite(states).all()


def test_impossible_shapes_are_rejected(minilm):
    with pytest.raises(
        SourceDerivationError, match="num_hidden_layers=8 must be between 1 and the parent's 6"
    ):
        derive_bert_source(minilm, num_hidden_layers=8)
    with pytest.raises(SourceDerivationError, match="hidden_size \\(100\\) must be num_attention_heads"):
        derive_bert_source(minilm, hidden_size=100, num_attention_heads=3)


def test_distillation_reduces_its_loss(minilm, tokenizer, sentences):
    student = derive_bert_source(minilm, num_hidden_layers=2, hidden_size=64, intermediate_size=128)
    held = dict(tokenizer(sentences[-8:], padding=True, truncation=True, max_length=24, return_tensors="pt"))
    with torch.no_grad():
        before = distillation_loss(student, minilm, held).item()
    distill_bert_source(
        student, minilm, sentences[:-8], tokenizer=tokenizer, steps=6, batch_size=8, max_length=24, lr=1e-3
    )
    with torch.no_grad():
        after = distillation_loss(student, minilm, held).item()
    assert after < 0.8 * before, (before, after)


def test_distilled_source_is_cached_and_reloads_identically(minilm_path, minilm, tokenizer, sentences, tmp_path):
    shape = {"num_hidden_layers": 2, "hidden_size": 64, "intermediate_size": 128}
    recipe = {"steps": 3, "batch_size": 4, "max_length": 24, "lr": 1e-3, "seed": 0, "cache_dir": tmp_path}
    first = distilled_bert_source(minilm_path, sentences[:-8], shape=shape, **recipe)
    plain = derive_bert_source(minilm, **shape)
    assert first.config.fedgrow_derivation == plain.config.fedgrow_derivation
    held = dict(tokenizer(sentences[-8:], padding=True, truncation=True, max_length=24, return_tensors="pt"))
    with torch.no_grad():
        assert distillation_loss(first, minilm, held) < distillation_loss(plain, minilm, held)
    (entry,) = [p for p in tmp_path.iterdir() if not p.name.startswith(".")]
    assert '"steps": 3' in (entry / "fedgrow_recipe.json").read_text()
    again = distilled_bert_source(minilm_path, sentences[:-8], shape=shape, **recipe)
    for (name, tensor), (_, reloaded) in zip(first.state_dict().items(), again.state_dict().items()):
        torch.testing.assert_close(reloaded, tensor, rtol=0, atol=0, msg=name)
    assert again.config.fedgrow_derivation == first.config.fedgrow_derivation
    distilled_bert_source(minilm_path, sentences[:-9], shape=shape, **recipe)  # other sentences: a new entry
    assert len([p for p in tmp_path.iterdir() if not p.name.startswith(".")]) == 2


def test_vit_pretraining_learns_and_cache_hit_returns_identical_weights(tmp_path):
    train = load_image_classification("sklearn-digits", "train")
    test = load_image_classification("sklearn-digits", "test").with_format("torch")[:]
    config = ViTConfig(
        image_size=8, patch_size=4, num_channels=1, hidden_size=32, num_hidden_layers=2,
        num_attention_heads=4, intermediate_size=64,
    )  # fmt: skip
    model = pretrain_vit_source(config, train, steps=40, batch_size=32, lr=3e-3, seed=0, cache_dir=tmp_path)
    with torch.no_grad():
        accuracy = (
            (model(pixel_values=test["pixel_values"]).logits.argmax(-1) == test["label"]).float().mean()
        )
    assert accuracy > 0.3  # chance is 0.1
    (entry,) = [p for p in tmp_path.iterdir() if not p.name.startswith(".")]
    assert (entry / "fedgrow_recipe.json").is_file()
    again = pretrain_vit_source(config, train, steps=40, batch_size=32, lr=3e-3, seed=0, cache_dir=tmp_path)
    assert isinstance(again, ViTForImageClassification) and again.config.num_labels == 10
    for (name, tensor), (_, reloaded) in zip(model.state_dict().items(), again.state_dict().items()):
        torch.testing.assert_close(reloaded, tensor, rtol=0, atol=0, msg=name)
    assert sorted(p.name for p in tmp_path.iterdir()) == [entry.name]  # no second entry, no temp leftovers


def test_vit_pretraining_rejects_mismatched_images():
    config = ViTConfig(image_size=16, patch_size=4, num_channels=1, hidden_size=32, num_attention_heads=4)
    with pytest.raises(ValueError, match="expects \\(1, 16, 16\\); use fedgrow_hf.data.resize_images"):
        pretrain_vit_source(config, load_image_classification("sklearn-digits", "test"), steps=1)


def test_vit_pretraining_takes_resized_torch_rows_with_integer_labels():
    digits = load_image_classification("sklearn-digits", "test", limit=16, seed=0)
    rows = resize_images(digits, image_size=16).cast_column("label", datasets.Value("int64"))
    config = ViTConfig(image_size=16, patch_size=8, num_channels=1, hidden_size=16, num_attention_heads=2)
    config.num_hidden_layers, config.intermediate_size = 1, 32
    model = pretrain_vit_source(config, rows, steps=2, batch_size=4)
    assert model.config.num_labels == max(digits["label"]) + 1
    assert config.num_labels == 2  # the caller's config is left alone
