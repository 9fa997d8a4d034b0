"""The trimming collator: batches shrink to their longest row and the model's outputs do not change."""

from __future__ import annotations

import datasets
import torch
from transformers import AutoTokenizer, BertForSequenceClassification, default_data_collator

from fedgrow_hf.data import tokenize_text, trim_padding_collator


def _rows(minilm_path, texts: list[str], max_length: int = 48) -> datasets.Dataset:
    tokenizer = AutoTokenizer.from_pretrained(minilm_path)
    return tokenize_text(datasets.Dataset.from_dict({"text": texts, "label": [0, 1, 0][: len(texts)]}),
                         tokenizer, max_length)


def test_batches_are_cut_to_their_longest_row_with_the_same_logits(minilm_path, tiny_bert_config):
    rows = _rows(minilm_path, ["a short one", "a somewhat longer sentence than the other", "ok"])
    features = [rows[i] for i in range(len(rows))]
    full, trimmed = default_data_collator(features), trim_padding_collator(features)
    longest = int(full["attention_mask"].sum(dim=1).max())
    assert full["input_ids"].shape[1] == 48
    for column in ("input_ids", "attention_mask", "token_type_ids"):
        assert trimmed[column].shape == (3, longest)
        assert torch.equal(trimmed[column], full[column][:, :longest])
    assert torch.equal(trimmed["labels"], full["labels"])
    torch.manual_seed(0)
    model = BertForSequenceClassification(tiny_bert_config()).eval()
    with torch.no_grad():
        torch.testing.assert_close(model(**trimmed).logits, model(**full).logits, atol=1e-5, rtol=1e-5)


def test_left_padding_and_images_keep_every_column():
    left_padded = [{"input_ids": torch.tensor([0, 0, 5, 6]), "attention_mask": torch.tensor([0, 0, 1, 1]),
                    "labels": 1}]
    assert trim_padding_collator(left_padded)["input_ids"].shape == (1, 4)
    images = [{"pixel_values": torch.zeros(1, 4, 4), "labels": 3} for _ in range(2)]
    assert trim_padding_collator(images)["pixel_values"].shape == (2, 1, 4, 4)
