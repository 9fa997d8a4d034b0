"""Every BertFor* head and both ViT classes grow, run and merge to the same outputs."""

from __future__ import annotations

import pytest
import torch
import transformers
from ligo_factories import bert_config, pixel_batch, random_bert, random_vit, token_batch, vit_config

from fedgrow_hf import grow

BERT_HEADS = [
    "BertModel",
    "BertForPreTraining",
    "BertForMaskedLM",
    "BertLMHeadModel",
    "BertForNextSentencePrediction",
    "BertForSequenceClassification",
    "BertForMultipleChoice",
    "BertForTokenClassification",
    "BertForQuestionAnswering",
]


def first_output(output) -> torch.Tensor:
    return next(value for value in output.values() if isinstance(value, torch.Tensor))


def assert_merge_matches(model, batch):
    model.eval()
    with torch.no_grad():
        expected = first_output(model(**batch))
        merged = model.merge_and_unload().eval()
        torch.testing.assert_close(first_output(merged(**batch)), expected, atol=1e-6, rtol=0)


@pytest.mark.parametrize("class_name", BERT_HEADS)
def test_every_bert_head(class_name):
    model_class = getattr(transformers, class_name)
    config = bert_config(layers=3, hidden=48, is_decoder=class_name == "BertLMHeadModel")
    model = grow(random_bert(), config, model_class=model_class)
    batch = token_batch()
    if class_name == "BertForMultipleChoice":
        batch = {key: value.unsqueeze(1).repeat(1, 2, 1) for key, value in batch.items()}
    assert_merge_matches(model, batch)


@pytest.mark.parametrize("class_name", ["ViTModel", "ViTForImageClassification"])
def test_both_vit_classes(class_name):
    model = grow(random_vit(), vit_config(layers=3, hidden=48), model_class=getattr(transformers, class_name))
    assert_merge_matches(model, pixel_batch())
