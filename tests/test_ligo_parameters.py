"""What LiGO trains: exactly the operator (analytic size), never the source."""

from __future__ import annotations

import pytest
import torch
from ligo_factories import bert_config, random_bert, token_batch
from transformers import BertForSequenceClassification, BertModel

from fedgrow_hf import LiGOConfig, grow


def kron_factor(n_out: int, g_out: int, n_in: int, g_in: int) -> int:
    return g_out * g_in + (n_out // g_out) * (n_in // g_in)


def stage_size(src: dict, tgt: dict, dense: bool = False) -> int:
    """LiGO operator size from the shapes alone.

    depth L_t*L_s; residual out+in factors; per target block: query out, key out, value out+in,
    FFN out+in. Head-Kronecker factors are (heads_t x heads_s) + (head_dim_t x head_dim_s); the FFN is
    grouped by heads too; dense factors are (1x1) + (n_t x n_s).
    """

    def factor(space: str) -> int:
        n_t, n_s = (tgt["ffn"], src["ffn"]) if space == "ffn" else (tgt["hidden"], src["hidden"])
        if dense:
            return 1 + n_t * n_s
        return kron_factor(n_t, tgt["heads"], n_s, src["heads"])

    per_block = factor("query") + factor("key") + 2 * factor("value") + 2 * factor("ffn")
    return tgt["layers"] * src["layers"] + 2 * factor("residual") + tgt["layers"] * per_block


SRC = {"layers": 2, "hidden": 32, "heads": 4, "ffn": 64}
TGT = {"layers": 3, "hidden": 48, "heads": 6, "ffn": 96}
MID = {"layers": 2, "hidden": 40, "heads": 4, "ffn": 80}


@pytest.mark.parametrize("dense", [False, True])
def test_trainable_parameters_equal_the_analytic_operator_size(dense):
    model = grow(
        random_bert(**SRC), bert_config(**TGT), model_class=BertModel, width_structure="dense" if dense else "head_kronecker"
    )
    trainable, _ = model.get_nb_trainable_parameters()
    assert trainable == stage_size(SRC, TGT, dense)


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
    # the target's growable weights are not parameters at all: they are the operator's output
    names = {name for name, _ in model.named_parameters()}
    assert not any("encoder.layer" in name or "embeddings" in name for name in names)


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
