"""LiGO on a GPU: placement, mixed precision and merging (skipped where no CUDA device exists)."""

from __future__ import annotations

import pytest
import torch
from ligo_factories import bert_config, random_bert, token_batch
from transformers import BertForSequenceClassification

from fedgrow_hf import grow

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


@pytest.fixture
def model():
    return grow(
        random_bert(), bert_config(layers=3, hidden=64, num_labels=2), model_class=BertForSequenceClassification,
        modules_to_save=["classifier"],
    )


def test_moves_to_the_gpu_and_trains_there(model):
    model.to("cuda").train()
    batch = {k: v.cuda() for k, v in token_batch().items()}
    loss = model(**batch, labels=torch.tensor([0, 1, 0], device="cuda")).loss
    loss.backward()
    operator = model.base_model.operator
    assert all(b.device.type == "cuda" for b in operator.buffers())
    assert all(p.grad is not None and p.grad.device.type == "cuda" for p in operator.parameters())


def test_cpu_and_gpu_agree_and_the_cache_follows_the_device(model):
    model.eval()
    batch = token_batch()
    with torch.no_grad():
        on_cpu = model(**batch).logits
        model.to("cuda")
        on_gpu = model(**{k: v.cuda() for k, v in batch.items()}).logits
    torch.testing.assert_close(on_gpu.cpu(), on_cpu, atol=1e-4, rtol=1e-4)


def test_bf16_autocast_stays_close_to_fp32(model):
    model.to("cuda").eval()
    batch = {k: v.cuda() for k, v in token_batch().items()}
    with torch.no_grad():
        full = model(**batch).logits
        with torch.autocast("cuda", dtype=torch.bfloat16):
            half = model(**batch).logits
    torch.testing.assert_close(half.float(), full, atol=5e-2, rtol=5e-2)


def test_merge_on_the_gpu(model):
    model.to("cuda").eval()
    batch = {k: v.cuda() for k, v in token_batch().items()}
    with torch.no_grad():
        expected = model(**batch).logits
        merged = model.merge_and_unload()
        assert all(p.device.type == "cuda" for p in merged.parameters())
        torch.testing.assert_close(merged(**batch).logits, expected, atol=1e-5, rtol=1e-5)
