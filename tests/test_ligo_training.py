"""A few Trainer steps on a fixed batch lower the loss, for BERT and ViT targets."""

from __future__ import annotations

import pytest
import torch
from datasets import Dataset
from ligo_factories import bert_config, random_bert, random_vit, vit_config
from transformers import BertForSequenceClassification, Trainer, TrainingArguments, ViTForImageClassification

from fedgrow_hf import grow


def fixed_batch_dataset(features: dict[str, torch.Tensor]) -> Dataset:
    return Dataset.from_dict({k: v.tolist() for k, v in features.items()}).with_format("torch")


def train_and_measure(model, dataset, tmp_path, steps=15) -> tuple[float, float]:
    args = TrainingArguments(
        output_dir=str(tmp_path),
        max_steps=steps,
        per_device_train_batch_size=len(dataset),
        learning_rate=1e-2,  # two stages compose: 3e-2 overshoots through Dual-LiGO
        use_cpu=True,
        report_to=[],
        logging_steps=1,
        save_strategy="no",
        seed=0,
        disable_tqdm=True,
    )
    trainer = Trainer(model=model, args=args, train_dataset=dataset)
    trainer.train()
    losses = [entry["loss"] for entry in trainer.state.log_history if "loss" in entry]
    return losses[0], losses[-1]


@pytest.mark.parametrize("intermediate", [None, {"num_hidden_layers": 2, "hidden_size": 48, "intermediate_size": 96, "num_attention_heads": 4}])
def test_trainer_lowers_the_loss_bert(tmp_path, intermediate):
    generator = torch.Generator().manual_seed(0)
    ids = torch.randint(0, 120, (8, 10), generator=generator)
    data = fixed_batch_dataset({"input_ids": ids, "attention_mask": torch.ones_like(ids), "labels": torch.arange(8) % 2})
    model = grow(
        random_bert(), bert_config(layers=3, hidden=64, num_labels=2), model_class=BertForSequenceClassification,
        modules_to_save=["classifier"], intermediate_config=intermediate,
    )
    first, last = train_and_measure(model, data, tmp_path)
    assert last < 0.8 * first


def test_trainer_lowers_the_loss_vit(tmp_path):
    generator = torch.Generator().manual_seed(0)
    data = fixed_batch_dataset({"pixel_values": torch.randn(8, 1, 16, 16, generator=generator), "labels": torch.arange(8) % 4})
    model = grow(
        random_vit(), vit_config(layers=3, hidden=64, num_labels=4), model_class=ViTForImageClassification,
        modules_to_save=["classifier"],
    )
    first, last = train_and_measure(model, data, tmp_path)
    assert last < 0.8 * first
