"""What LiGO trains: exactly the operator (analytic size), never the source."""

from __future__ import annotations

import pytest
import torch
from ligo_factories import bert_config, random_bert, token_batch
from transformers import BertForSequenceClassification, BertModel

from fedgrow_hf import LiGOConfig, grow
from fedgrow_hf.tuners.ligo.config import WIDTH_STRUCTURES

BERT_BLOCK_PARAMETERS, BERT_BLOCK_NORMS = 16, 2  # 8 modules with weight and bias; 2 LayerNorms per block


def ffn_group_count(n_t: int, n_s: int) -> int:
    """The FFN is grouped in g blocks (g divides both sizes) minimising g^2 + (n_t/g)(n_s/g)."""
    return min((g for g in range(1, min(n_t, n_s) + 1) if n_t % g == 0 and n_s % g == 0),
               key=lambda g: g * g + (n_t // g) * (n_s // g))


def stage_size(src: dict, tgt: dict, structure: str = "head_kronecker") -> int:
    """LiGO operator size from the shapes alone.

    depth: one L_t x L_s mix per block parameter, plus one gain offset per block LayerNorm and target
    block; residual out+in factors (always full matrices, +1 for the stored 1x1 group); per target block:
    query out, key out, value out+in, FFN out+in. Attention factors are (heads_t x heads_s) + (head_dim_t x
    head_dim_s) when the target's heads are at least as many and as wide; with ``head_groups``, where they are
    fewer and k times as wide, k source heads side by side are one group, (heads_t x heads_s/k) + (head_dim_t x
    k head_dim_s), if the source's heads make no more such groups than the target has heads; else full. FFN
    factors are (g x g) + (n_t/g x n_s/g). ``dense``: every factor full.
    """

    def full(n_t: int, n_s: int) -> int:
        return 1 + n_t * n_s

    def attention() -> int:
        h_t, h_s = tgt["heads"], src["heads"]
        d_t, d_s = tgt["hidden"] // h_t, src["hidden"] // h_s
        k = d_t // d_s if d_t % d_s == 0 else 0
        if structure == "head_groups" and h_t < h_s and k > 1 and h_s % k == 0 and h_s // k <= h_t:
            return h_t * (h_s // k) + d_t * (k * d_s)
        if structure == "dense" or h_t < h_s or d_t < d_s:
            return full(tgt["hidden"], src["hidden"])
        return h_t * h_s + d_t * d_s

    def ffn() -> int:
        if structure == "dense":
            return full(tgt["ffn"], src["ffn"])
        g = ffn_group_count(tgt["ffn"], src["ffn"])
        return g * g + (tgt["ffn"] // g) * (src["ffn"] // g)

    depth = BERT_BLOCK_PARAMETERS * tgt["layers"] * src["layers"] + BERT_BLOCK_NORMS * tgt["layers"]
    per_block = 4 * attention() + 2 * ffn()
    return depth + 2 * full(tgt["hidden"], src["hidden"]) + tgt["layers"] * per_block


SRC = {"layers": 2, "hidden": 32, "heads": 4, "ffn": 64}
TGT = {"layers": 3, "hidden": 48, "heads": 6, "ffn": 96}
MID = {"layers": 2, "hidden": 40, "heads": 4, "ffn": 80}


# fewer, wider target heads: two source heads side by side in each (as MiniLM -> BERT L8/H512), or four; and fewer
# heads no such grouping fits (12 of 4 -> 2 of 32: groups of 8 do not divide 12), grown with full factors
FEWER_HEADS = [({"layers": 2, "hidden": 48, "heads": 12, "ffn": 96}, {"layers": 3, "hidden": 64, "heads": heads, "ffn": 96})
               for heads in (8, 4, 2)]


@pytest.mark.parametrize("structure", WIDTH_STRUCTURES)
@pytest.mark.parametrize("src,tgt", [(SRC, TGT), *FEWER_HEADS])
def test_trainable_parameters_equal_the_analytic_operator_size(structure, src, tgt):
    model = grow(random_bert(**src), bert_config(**tgt), model_class=BertModel, width_structure=structure)
    trainable, _ = model.get_nb_trainable_parameters()
    assert trainable == stage_size(src, tgt, structure)


def test_dual_ligo_trains_local_and_global_and_the_head_on_request():
    model = grow(
        random_bert(**SRC),
        bert_config(**TGT, num_labels=3),
        model_class=BertForSequenceClassification,
        intermediate_config={"num_hidden_layers": 2, "hidden_size": 40, "intermediate_size": 80, "num_attention_heads": 4},
        modules_to_save=["classifier"],
    )
    head = 48 * 3 + 3
    trainable, _ = model.get_nb_trainable_parameters()
    assert trainable == stage_size(SRC, MID) + stage_size(MID, TGT) + head
    assert sum(p.numel() for p in model.global_state_dict().values()) == stage_size(MID, TGT)


def test_train_flags_freeze_stages():
    mid = {"num_hidden_layers": 2, "hidden_size": 40, "intermediate_size": 80, "num_attention_heads": 4}
    model = grow(random_bert(**SRC), bert_config(**TGT), model_class=BertModel, intermediate_config=mid, train_local=False)
    assert model.get_nb_trainable_parameters()[0] == stage_size(MID, TGT)


def test_no_source_parameter_gets_a_gradient():
    source = random_bert(**SRC)
    model = grow(source, bert_config(**TGT), model_class=BertModel)
    model.train()
    model(**token_batch()).last_hidden_state.pow(2).mean().backward()
    assert all(p.grad is None for p in source.parameters())
    operator = model.base_model.operator
    assert all(not b.requires_grad and b.grad is None for b in operator.sources.buffers())
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in operator.parameters())
    # the target's growable weights are the operator's output: what the module holds as their parameter
    # is a frozen stand-in without storage
    grown = {name: p for name, p in model.named_parameters() if "encoder.layer" in name or "embeddings" in name}
    assert grown and all(p.numel() == 0 and not p.requires_grad and p.grad is None for p in grown.values())


def test_print_trainable_parameters_counts_the_grown_weights_in_all_params(capsys):
    model = grow(random_bert(**SRC), bert_config(**TGT, num_labels=3), model_class=BertForSequenceClassification,
                 modules_to_save=["classifier"])
    plain = BertForSequenceClassification(bert_config(**TGT, num_labels=3))
    target_size = sum(p.numel() for p in plain.parameters())
    head = 48 * 3 + 3
    trainable, total = model.get_nb_trainable_parameters()
    assert trainable == stage_size(SRC, TGT) + head
    # the target (its head counted once, though PEFT keeps an original and a trainable copy) and the operator
    assert total == target_size + head + stage_size(SRC, TGT)
    model.print_trainable_parameters()
    assert f"all params: {total:,d}" in capsys.readouterr().out
    merged = model.merge_and_unload()
    assert sum(p.numel() for p in merged.parameters()) == target_size


def test_config_round_trips_exactly_through_json(tmp_path):
    config = LiGOConfig(
        source_model_name_or_path=["a/b", "c"],
        intermediate_config={"num_hidden_layers": 2, "hidden_size": 40, "intermediate_size": 80, "num_attention_heads": 4},
        width_structure="dense",
        depth_init="interpolate",
        init_noise_std=0.01,
        modules_to_save=["classifier"],
        task_type="SEQ_CLS",
    )
    config.save_pretrained(tmp_path)
    loaded = LiGOConfig.from_pretrained(tmp_path)
    assert loaded == config and loaded.to_dict() == config.to_dict()
    from peft import PeftConfig

    assert type(PeftConfig.from_pretrained(tmp_path)) is LiGOConfig


def test_adapter_config_saved_before_width_step_loads_with_plain_factors(tmp_path):
    import json

    LiGOConfig(source_model_name_or_path="a/b").save_pretrained(tmp_path)
    saved = tmp_path / "adapter_config.json"
    assert LiGOConfig.from_pretrained(tmp_path).width_step == "fan_in"
    older = json.loads(saved.read_text())
    del older["width_step"]
    saved.write_text(json.dumps(older))
    assert LiGOConfig.from_pretrained(tmp_path).width_step == "plain"


def test_config_accepts_a_transformers_config_as_intermediate_shape():
    config = LiGOConfig(intermediate_config=bert_config(layers=2, hidden=40, heads=4, ffn=80))
    assert config.intermediate_config == {
        "num_hidden_layers": 2,
        "hidden_size": 40,
        "intermediate_size": 80,
        "num_attention_heads": 4,
    }


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"width_structure": "sparse"}, "width_structure"),
        ({"depth_init": "random"}, "depth_init"),
        ({"intermediate_config": {"hidden_size": 3}}, "intermediate_config"),
        ({"init_noise_std": -1.0}, "init_noise_std"),
    ],
)
def test_config_rejects_bad_values(kwargs, message):
    with pytest.raises(ValueError, match=message):
        LiGOConfig(**kwargs)


def test_handed_in_source_models_are_used_once_and_never_serialised(tiny_bert_config):
    from transformers import BertModel

    from fedgrow_hf import grow

    source = BertModel(tiny_bert_config(1, 16, 2), add_pooling_layer=False)
    model = grow(source, tiny_bert_config(2, 32, 4))
    config = model.peft_config["default"]
    assert config.source_models is None  # taken by the tuner when the adapter was built
    assert "source_models" not in config.to_dict()
    from fedgrow_hf import LiGOConfig

    handed = LiGOConfig(source_models=[source])
    assert "source_models" not in handed.to_dict() and handed.take_source_models() == [source]
    assert handed.source_models is None
