"""A few training steps on a fixed batch lower the loss, for BERT, ViT and decoder (Llama, GPT-2) targets."""

from __future__ import annotations

import pytest
import torch
from datasets import Dataset
from ligo_factories import (
    DECODER_VOCAB,
    bert_config,
    gpt2_config,
    llama_config,
    random_bert,
    random_gpt2,
    random_llama,
    random_vit,
    vit_config,
)
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


@pytest.mark.parametrize("family", ["llama", "gpt2"])
def test_the_operator_learns_a_causal_lm(family):
    """Every operator parameter gets a gradient through the decoder roles (fused Conv1D qkv, grouped attention,
    the tied head) and Adam lowers the loss. A plain loop at a constant rate: from a random source's
    near-uniform logits, the Trainer's decaying rate needs several times the steps a classifier does."""
    ids = torch.randint(0, DECODER_VOCAB, (8, 10), generator=torch.Generator().manual_seed(0))
    if family == "llama":
        model = grow(random_llama(), llama_config(layers=3, hidden=48, heads=6, kv_heads=3))
    else:
        model = grow(random_gpt2(), gpt2_config(layers=3, hidden=64, heads=8))
    trainable = [(name, param) for name, param in model.named_parameters() if param.requires_grad]
    optimizer = torch.optim.Adam([param for _, param in trainable], lr=1e-2)
    losses = []
    for _ in range(40):
        optimizer.zero_grad()
        loss = model(input_ids=ids, labels=ids).loss
        loss.backward()
        if not losses:
            assert all(param.grad is not None and param.grad.any() for _, param in trainable), "a factor got no gradient"
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.85 * losses[0]
