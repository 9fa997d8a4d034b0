"""The grown model under PyTorch's and transformers' tooling: activation checkpointing and torch.compile
train the operator exactly as the eager model does."""

from __future__ import annotations

import shutil

import pytest
import torch
from ligo_factories import bert_config, random_bert, token_batch
from transformers import BertForSequenceClassification

from fedgrow_hf import grow

BATCH = {**token_batch(), "labels": torch.tensor([0, 1, 1])}


def _model():
    torch.manual_seed(0)
    return grow(
        random_bert(layers=2, hidden=32, heads=4),
        bert_config(layers=3, hidden=64, heads=8, num_labels=2),
        model_class=BertForSequenceClassification,
        task_type="SEQ_CLS",
        modules_to_save=["classifier"],
        init_noise_std=0.05,
    )


def _two_steps(model, forward=None) -> list[dict[str, torch.Tensor]]:
    """Gradients of two training steps with an optimizer step between them (the grown weights change)."""
    forward = model if forward is None else forward
    optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.1)
    model.train()
    steps = []
    for _ in range(2):
        optimizer.zero_grad()
        forward(**BATCH).loss.backward()
        steps.append({name: p.grad.clone() for name, p in model.named_parameters() if p.requires_grad})
        optimizer.step()
    return steps


@pytest.fixture(scope="module")
def eager_gradients():
    return _two_steps(_model())


def _assert_same_gradients(steps, reference, atol=1e-6):
    for step, expected in zip(steps, reference):
        assert step.keys() == expected.keys()
        assert any("ligo_operator" in name for name in step)
        for name, grad in step.items():
            torch.testing.assert_close(grad, expected[name], atol=atol, rtol=1e-4, msg=name)


@pytest.mark.parametrize("kwargs", [None, {"use_reentrant": False}])
def test_gradient_checkpointing_trains_the_operator_like_the_eager_model(kwargs, eager_gradients):
    model = _model()
    model.gradient_checkpointing_enable(gradient_checkpointing_kwargs=kwargs)
    assert all(layer.gradient_checkpointing for layer in model.base_model.model.bert.encoder.layer)
    _assert_same_gradients(_two_steps(model), eager_gradients)


@pytest.mark.skipif(not (shutil.which("cc") or shutil.which("gcc")), reason="inductor needs a C compiler")
def test_torch_compile_trains_the_operator_like_the_eager_model(eager_gradients):
    model = _model()
    _assert_same_gradients(_two_steps(model, torch.compile(model)), eager_gradients, atol=1e-5)
