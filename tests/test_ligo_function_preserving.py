"""Default initialisation starts from the source's function (LiGO/bert2BERT duplication + stacking)."""

from __future__ import annotations

import pytest
import torch
from ligo_factories import (
    bert_config,
    fold_back,
    pixel_batch,
    random_bert,
    random_vit,
    token_batch,
    vit_config,
)
from transformers import BertModel, ViTModel

from fedgrow_hf import grow
from fedgrow_hf.tuners.ligo.layer import depth_init


def grown_states(model, batch):
    with torch.no_grad():
        return model(**batch).last_hidden_state


@pytest.mark.parametrize("width_structure", ["head_kronecker", "dense"])
def test_identity_growth_reproduces_bert(width_structure):
    source = random_bert()
    model = grow(source, bert_config(), model_class=BertModel, width_structure=width_structure).eval()
    batch = token_batch()
    torch.testing.assert_close(grown_states(model, batch), grown_states(source, batch), atol=1e-5, rtol=0)


def test_identity_growth_reproduces_vit():
    source = random_vit()
    model = grow(source, vit_config(), model_class=ViTModel).eval()
    batch = pixel_batch()
    torch.testing.assert_close(grown_states(model, batch), grown_states(source, batch), atol=1e-5, rtol=0)


@pytest.mark.parametrize(
    "target_shape",
    [
        {"hidden": 64, "heads": 4},  # wider heads (head dim 8 -> 16): query scaling matters
        {"hidden": 64, "heads": 8},  # more heads of the same size
        {"hidden": 96, "heads": 4, "ffn": 192},  # x3 everywhere
    ],
)
@pytest.mark.parametrize("width_structure", ["head_kronecker", "dense"])
def test_exact_multiple_width_growth_is_function_preserving_bert(target_shape, width_structure):
    source = random_bert(hidden=32, heads=4, ffn=64)
    model = grow(source, bert_config(**target_shape), model_class=BertModel, width_structure=width_structure).eval()
    batch = token_batch()
    expand = model.base_model.operator.global_stage.width["residual_out"].matrix()
    folded = fold_back(grown_states(model, batch), expand)
    # 1e-5 absolute on LayerNorm-scale states: float32 round-off of the wider sums only
    torch.testing.assert_close(folded, grown_states(source, batch), atol=1e-5, rtol=0)
    # and the grown model really is wider: every source unit is duplicated
    assert expand.shape == (target_shape["hidden"], 32) and bool((expand.sum(1) == 1).all())


def test_exact_multiple_width_growth_is_function_preserving_vit():
    source = random_vit(hidden=32, heads=4, ffn=64)
    model = grow(source, vit_config(hidden=64, heads=4, ffn=128), model_class=ViTModel).eval()
    batch = pixel_batch()
    expand = model.base_model.operator.global_stage.width["residual_out"].matrix()
    torch.testing.assert_close(fold_back(grown_states(model, batch), expand), grown_states(source, batch), atol=1e-5, rtol=0)


def test_depth_initialisations_follow_ligo():
    assert depth_init(4, 2, "stack").argmax(1).tolist() == [0, 1, 0, 1]
    assert depth_init(4, 2, "interpolate").argmax(1).tolist() == [0, 0, 1, 1]
    assert torch.equal(depth_init(3, 3, "stack"), torch.eye(3))
    model = grow(random_bert(layers=2), bert_config(layers=4), model_class=BertModel, depth_init="interpolate")
    assert model.base_model.operator.global_stage.depth.argmax(1).tolist() == [0, 0, 1, 1]


def test_deeper_growth_is_not_the_identity_but_starts_from_the_source():
    """Stacking is not function-preserving (LiGO), but every grown block is a copy of a source block."""
    source = random_bert(layers=2)
    model = grow(source, bert_config(layers=4), model_class=BertModel).eval()
    grown_states(model, token_batch())  # grown weights are installed by the first forward pass
    grown_query = model.base_model.model.encoder.layer[2].attention.self.query.weight
    torch.testing.assert_close(grown_query, source.encoder.layer[0].attention.self.query.weight)
