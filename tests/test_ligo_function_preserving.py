"""Default growth is lossless: the grown model computes the source's function before any training."""

from __future__ import annotations

import warnings

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

from fedgrow_hf import LosslessGrowthWarning, grow
from fedgrow_hf.architectures import Side, Space
from fedgrow_hf.tuners.ligo.initialization import contraction, expansion, identity_depth_plan, repeat_depth

ARCHITECTURES = {
    "bert": (random_bert, bert_config, BertModel, token_batch),
    "vit": (random_vit, vit_config, ViTModel, pixel_batch),
}
SOURCE = {"layers": 2, "hidden": 32, "heads": 4, "ffn": 64}
# (source shape, target shape): every case is mathematically growable without loss
SHAPES = [
    (SOURCE, SOURCE),  # identity
    (SOURCE, {"layers": 2, "hidden": 64, "heads": 4, "ffn": 64}),  # wider heads (8 -> 16)
    (SOURCE, {"layers": 2, "hidden": 64, "heads": 8, "ffn": 128}),  # more heads of the same size
    (SOURCE, {"layers": 2, "hidden": 96, "heads": 8, "ffn": 100}),  # more and wider (8 -> 12) heads, FFN x1.56
    (SOURCE, {"layers": 5, "hidden": 64, "heads": 8, "ffn": 128}),  # deeper (2 -> 5) and wider
    ({"layers": 1, "hidden": 32, "heads": 4, "ffn": 64}, {"layers": 3, "hidden": 32, "heads": 4, "ffn": 64}),
]


def grown_states(model, batch):
    with torch.no_grad():
        return model(**batch).last_hidden_state


def residual_expansion(model) -> torch.Tensor:
    return model.base_model.operator.global_stage.width["residual_out"].matrix()


@pytest.mark.parametrize("width_structure", ["head_kronecker", "dense"])
@pytest.mark.parametrize("source_shape,target_shape", SHAPES)
@pytest.mark.parametrize("arch", ARCHITECTURES)
def test_default_growth_is_lossless(arch, source_shape, target_shape, width_structure):
    make_source, make_config, model_class, make_batch = ARCHITECTURES[arch]
    source = make_source(**source_shape)
    with warnings.catch_warnings():
        warnings.simplefilter("error", LosslessGrowthWarning)  # an exact growth must not warn
        model = grow(source, make_config(**target_shape), model_class=model_class, width_structure=width_structure)
    batch = make_batch()
    folded = fold_back(grown_states(model.eval(), batch), residual_expansion(model))
    torch.testing.assert_close(folded, grown_states(source, batch), atol=1e-5, rtol=0)


def test_dual_ligo_is_lossless_through_both_stages():
    source = random_bert(layers=2, hidden=32, heads=4, ffn=64)
    intermediate = {"num_hidden_layers": 3, "hidden_size": 64, "intermediate_size": 128, "num_attention_heads": 8}
    model = grow(source, bert_config(layers=4, hidden=128, heads=8, ffn=256), model_class=BertModel,
                 intermediate_config=intermediate).eval()
    operator = model.base_model.operator
    expand = operator.global_stage.width["residual_out"].matrix() @ operator.local_stages[0].width["residual_out"].matrix()
    batch = token_batch()
    torch.testing.assert_close(fold_back(grown_states(model, batch), expand), grown_states(source, batch), atol=1e-5, rtol=0)


def test_merged_model_keeps_the_function():
    source = random_bert()
    model = grow(source, bert_config(layers=4, hidden=64, heads=8), model_class=BertModel).eval()
    expand = residual_expansion(model)
    merged = model.merge_and_unload().eval()
    batch = token_batch()
    torch.testing.assert_close(fold_back(grown_states(merged, batch), expand), grown_states(source, batch), atol=1e-5, rtol=0)


@pytest.mark.parametrize(
    "target_shape,cause",
    [
        ({"hidden": 48, "heads": 3, "ffn": 64}, "not a multiple"),  # residual 32 -> 48
        ({"hidden": 64, "heads": 2, "ffn": 64}, "fewer or narrower heads"),  # 4 heads -> 2
        ({"hidden": 64, "heads": 16, "ffn": 64}, "fewer or narrower heads"),  # head size 8 -> 4
    ],
)
def test_impossible_lossless_growth_warns_with_its_cause(target_shape, cause):
    with pytest.warns(LosslessGrowthWarning, match=cause):
        grow(random_bert(), bert_config(**target_shape), model_class=BertModel)


def test_repeating_depth_init_warns_that_it_changes_the_function():
    with pytest.warns(LosslessGrowthWarning, match="repeats source blocks"):
        grow(random_bert(layers=2), bert_config(layers=4), model_class=BertModel, depth_init="stack")


def test_fewer_heads_are_not_rank_capped():
    """12 heads of 32 -> 8 of 64 cannot be exact, but no factor structure may cap the expansion's rank."""
    model = grow(random_bert(hidden=48, heads=12, ffn=96), bert_config(hidden=64, heads=8, ffn=96), model_class=BertModel)
    for key, factor in model.base_model.operator.global_stage.width.items():
        matrix = factor.matrix()
        matrix = matrix[0] if matrix.dim() == 3 else matrix
        rank = torch.linalg.matrix_rank(matrix).item()
        assert rank == min(matrix.shape), f"{key} has rank {rank} < {min(matrix.shape)}"


def test_head_groups_take_source_heads_side_by_side_into_fewer_wider_target_heads():
    """12 heads of 4 -> 8 of 8 (MiniLM -> BERT L8/H512 in small): with ``head_groups`` each target head starts from
    two source heads side by side, so the head spaces are Kronecker factors over those pairs (8 x 6 head maps,
    8 x 8 unit maps), a third of the dense operator, whose start is the full factors' start (``head_kronecker``,
    the default), factor by factor."""
    source = random_bert(layers=2, hidden=48, heads=12, ffn=96)
    config = bert_config(layers=3, hidden=64, heads=8, ffn=96)
    with pytest.warns(LosslessGrowthWarning, match="fewer or narrower heads"):  # two heads share one softmax
        grouped = grow(source, config, model_class=BertModel, width_structure="head_groups")
        full = grow(source, config, model_class=BertModel)
    stage, full_stage = grouped.base_model.operator.global_stage, full.base_model.operator.global_stage
    for space in (Space.QUERY, Space.KEY, Space.VALUE):
        layout = stage.layouts[space]
        assert (layout.merged_heads, layout.groups, layout.units, layout.kronecker) == (2, (8, 6), (8, 8), True)
        assert (full_stage.layouts[space].merged_heads, full_stage.layouts[space].kronecker) == (1, False)
        for side in (Side.IN, Side.OUT):
            key = f"{space.value}_{side.value}"
            if key in stage.width:
                torch.testing.assert_close(stage.width[key].matrix(), full_stage.width[key].matrix())
    assert stage.width["query_out"].unit.shape == (3, 8, 8) and stage.width["query_out"].group.shape == (3, 8, 6)
    assert full_stage.width["query_out"].unit.shape == (3, 64, 48)
    batch = token_batch()
    torch.testing.assert_close(grown_states(grouped.eval(), batch), grown_states(full.eval(), batch))
    dense = grow(source, config, model_class=BertModel, width_structure="dense")
    assert grouped.get_nb_trainable_parameters()[0] < dense.get_nb_trainable_parameters()[0] / 3


def test_copies_split_unevenly_so_that_training_can_separate_them():
    """LEMON's symmetry breaking: copies of a unit consume it with different weights (summing to 1)."""
    split = contraction(5, 2)
    torch.testing.assert_close(split.T @ expansion(5, 2), torch.eye(2))
    assert split[:, 0].unique().numel() == 4  # 3 copies: 1/6, 2/6, 3/6 (and zeros)
    torch.testing.assert_close(contraction(4, 2, asymmetric=False), expansion(4, 2) / 2)


def test_identity_depth_plan_keeps_the_last_source_block_last():
    assert identity_depth_plan(8, 6) == [(0, False), (1, False), (2, False), (2, True), (3, False), (4, False),
                                         (4, True), (5, False)]
    assert identity_depth_plan(3, 1) == [(0, False), (0, True), (0, True)]
    assert identity_depth_plan(4, 4) == [(i, False) for i in range(4)]
    with pytest.raises(ValueError):
        identity_depth_plan(2, 3)


def test_repeating_depth_initialisations_follow_ligo():
    assert repeat_depth(4, 2, "stack").argmax(1).tolist() == [0, 1, 0, 1]
    assert repeat_depth(4, 2, "interpolate").argmax(1).tolist() == [0, 0, 1, 1]
    model = grow(random_bert(layers=2), bert_config(layers=4), model_class=BertModel, depth_init="interpolate")
    assert model.base_model.operator.global_stage.depth[0].argmax(1).tolist() == [0, 0, 1, 1]


def test_new_blocks_copy_their_predecessor_except_the_residual_writers():
    source = random_bert(layers=2)
    model = grow(source, bert_config(layers=3), model_class=BertModel).eval()
    new_block = model.base_model.model.encoder.layer[1]
    torch.testing.assert_close(new_block.attention.self.query.weight, source.encoder.layer[0].attention.self.query.weight)
    assert not new_block.output.dense.weight.any() and not new_block.attention.output.dense.weight.any()
