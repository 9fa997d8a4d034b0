"""The grown model under PyTorch's, transformers' and accelerate's tooling: grown weights are parametrizations,
activation checkpointing and torch.compile train the operator exactly as the eager model does, and a target
placed with a ``device_map`` keeps its placement."""

from __future__ import annotations

import copy
import shutil

import pytest
import torch
from accelerate import dispatch_model
from ligo_factories import bert_config, random_bert, token_batch
from peft import get_peft_model
from torch import nn
from torch.nn.utils import parametrize
from transformers import AutoModelForSequenceClassification, BertForSequenceClassification

from fedgrow_hf import LiGOConfig, grow

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


@pytest.mark.slow  # 27 s in a fresh environment (inductor's compile cache is cold), 12 s warm
@pytest.mark.skipif(not (shutil.which("cc") or shutil.which("gcc")), reason="inductor needs a C compiler")
def test_torch_compile_trains_the_operator_like_the_eager_model(eager_gradients):
    model = _model()
    _assert_same_gradients(_two_steps(model, torch.compile(model)), eager_gradients, atol=1e-5)


def test_a_model_copies_after_a_training_pass():
    """``copy.deepcopy`` of a grown model works after a training pass too: the pass's grown tensors hang on the
    operator's graph (PyTorch copies no tensor that is not a graph leaf), so the copy grows its own."""
    model = _model()
    _two_steps(model)
    copied = copy.deepcopy(model)
    with torch.no_grad():
        torch.testing.assert_close(copied(**BATCH).logits, model(**BATCH).logits)


def _grown_owners(model) -> list[tuple[nn.Module, str]]:
    return [owner for slot in model.base_model.grown_slots() for owner in slot.owners]


def test_grown_weights_are_parametrizations_that_read_the_operator():
    model = _model()
    owners = _grown_owners(model)
    assert owners and all(parametrize.is_parametrized(module, name) for module, name in owners)
    embeddings = model.base_model.model.bert.embeddings.word_embeddings
    # read before any forward pass: the operator's output, with its graph to the operator
    embeddings.weight.pow(2).sum().backward()
    operator = model.base_model.operator
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in operator.parameters())
    with pytest.raises(RuntimeError, match="right_inverse"):
        embeddings.weight = torch.zeros(120, 64)
    with torch.no_grad():
        weights = {f"{id(module)}.{name}": getattr(module, name).clone() for module, name in owners}
        expected = model(**BATCH).logits
        merged = model.merge_and_unload()
        torch.testing.assert_close(merged(**BATCH).logits, expected)
    assert not any(parametrize.is_parametrized(module) for module in merged.modules())
    assert type(merged.bert.embeddings.word_embeddings) is nn.Embedding
    for module, name in owners:
        assert name in dict(module.named_parameters(recurse=False))
        torch.testing.assert_close(getattr(module, name), weights[f"{id(module)}.{name}"])


DEVICE_MAP_CPU = {"bert.embeddings": "cpu", **{f"bert.encoder.layer.{i}": "cpu" for i in range(3)}, "bert.pooler": "cpu",
                  "classifier": "cpu"}


def _saved_target(tmp_path):
    """A source and a target checkpoint on disk, as a user loads them; the target with random weights."""
    if not (tmp_path / "target").exists():
        random_bert(layers=2, hidden=32, heads=4).save_pretrained(tmp_path / "source")
        torch.manual_seed(1)
        BertForSequenceClassification(bert_config(layers=3, hidden=64, heads=8)).save_pretrained(tmp_path / "target")
    return tmp_path / "target"


def _ligo(target, tmp_path):
    config = LiGOConfig(source_model_name_or_path=str(tmp_path / "source"), modules_to_save=["classifier"],
                        task_type="SEQ_CLS")
    return get_peft_model(target, config)


def test_a_target_dispatched_by_accelerate_grows_and_trains_where_it_was_placed(tmp_path):
    """accelerate's hooks on every block, as ``from_pretrained(device_map=...)`` attaches them over several devices
    (forced here: on a machine with only a CPU, transformers places a model without hooks)."""
    plain = _ligo(AutoModelForSequenceClassification.from_pretrained(_saved_target(tmp_path)), tmp_path)
    target = AutoModelForSequenceClassification.from_pretrained(_saved_target(tmp_path), device_map="auto")
    placed = _ligo(dispatch_model(target, device_map=DEVICE_MAP_CPU, force_hooks=True), tmp_path)
    assert placed.base_model.model.hf_device_map == DEVICE_MAP_CPU
    assert hasattr(placed.base_model.model.bert.encoder.layer[0], "_hf_hook")
    with torch.no_grad():
        torch.testing.assert_close(placed.eval()(**BATCH).logits, plain.eval()(**BATCH).logits)
    _assert_same_gradients(_two_steps(placed), _two_steps(plain))
    for module, name in _grown_owners(placed):
        assert getattr(module, name).device == module.parametrizations[name].original.device


@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="needs two CUDA devices")
def test_a_target_split_over_two_gpus_gets_each_grown_weight_on_its_modules_device(tmp_path):
    device_map = {**DEVICE_MAP_CPU, "bert.embeddings": 0, "bert.encoder.layer.0": 0, "bert.encoder.layer.1": 1,
                  "bert.encoder.layer.2": 1, "bert.pooler": 1, "classifier": 1}
    plain = _ligo(AutoModelForSequenceClassification.from_pretrained(_saved_target(tmp_path)), tmp_path)
    placed = _ligo(AutoModelForSequenceClassification.from_pretrained(_saved_target(tmp_path), device_map=device_map),
                   tmp_path)
    batch = {key: value.to("cuda:0") for key, value in BATCH.items()}
    with torch.no_grad():
        torch.testing.assert_close(placed.eval()(**batch).logits.cpu(), plain.eval()(**BATCH).logits, atol=1e-4,
                                   rtol=1e-4)
    devices = {str(getattr(module, name).device) for module, name in _grown_owners(placed)}
    assert devices == {"cuda:0", "cuda:1"}
    placed.train()(**batch).loss.backward()
    assert all(p.grad is not None for p in placed.base_model.operator.parameters())
