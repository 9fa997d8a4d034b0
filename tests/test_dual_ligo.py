"""Dual-LiGO: heterogeneous sources meet at one intermediate shape; only Global-LiGO is shared."""

from __future__ import annotations

import pytest
import torch
from ligo_factories import bert_config, llama_config, random_bert, random_llama, token_batch
from transformers import BertForSequenceClassification

from fedgrow_hf import GlobalStateError, grow
from fedgrow_hf.tuners.ligo import initial_global_stage

INTERMEDIATE = {"num_hidden_layers": 4, "hidden_size": 128, "intermediate_size": 256, "num_attention_heads": 4}
TARGET = bert_config(layers=6, hidden=192, heads=6, ffn=384, num_labels=2)
SOURCES = [  # (layers, hidden, heads): the L2-H64, L3-H96, L4-H128
    {"layers": 2, "hidden": 64, "heads": 2},
    {"layers": 3, "hidden": 96, "heads": 3},
    {"layers": 4, "hidden": 128, "heads": 4},
]


def party(index: int):
    return grow(
        random_bert(seed=index, **SOURCES[index]),
        TARGET,
        model_class=BertForSequenceClassification,
        intermediate_config=INTERMEDIATE,
        modules_to_save=["classifier"],
    )


@pytest.fixture(scope="module")
def parties():
    return [party(i) for i in range(len(SOURCES))]


def test_global_state_has_identical_keys_and_shapes_across_sources(parties):
    shapes = [{key: tuple(value.shape) for key, value in p.global_state_dict().items()} for p in parties]
    assert shapes[0] == shapes[1] == shapes[2]
    assert "depth" in shapes[0] and shapes[0]["depth"][1:] == (6, 4)  # one (target x intermediate) mix per parameter
    local_shapes = [{key: tuple(value.shape) for key, value in p.local_state_dict().items()} for p in parties]
    assert local_shapes[0] != local_shapes[1]  # what stays private depends on the private source


def test_global_state_excludes_everything_private(parties):
    model = parties[0]
    shared = model.global_state_dict()
    stage = model.base_model.operator.global_stage
    assert set(shared) == set(stage.state_dict())
    private = [p for name, p in model.named_parameters() if "global_stage" not in name]
    assert private, "the party has private trainable state (Local-LiGO, head)"
    shared_ids = {id(p) for p in stage.parameters()}
    assert not any(id(p) in shared_ids for p in private)


def test_loading_another_partys_global_state_changes_the_model(parties):
    first, second = parties[0], parties[1]
    with torch.no_grad():
        for param in second.base_model.operator.global_stage.parameters():
            param.add_(0.05)
    batch = token_batch(length=8)
    first.eval()
    with torch.no_grad():
        before = first(**batch).logits
    first.load_global_state_dict(second.global_state_dict())
    for key, value in second.global_state_dict().items():
        assert torch.equal(first.global_state_dict()[key], value)
    with torch.no_grad():
        assert not torch.allclose(first(**batch).logits, before)


def corrupt(state: dict, how: str) -> tuple[dict, str]:
    state = {k: v.clone() for k, v in state.items()}
    key = "width.ffn_in.unit"
    if how == "missing":
        del state[key]
    elif how == "unexpected":
        state["width.extra"] = torch.zeros(1)
    elif how == "shape":
        state[key] = state[key][:, :-1]
    elif how == "dtype":
        state[key] = state[key].double()
    elif how == "nan":
        state[key][0, 0, 0] = float("nan")
    elif how == "inf":
        state[key][0, 0, 0] = float("inf")
    return state, "width.extra" if how == "unexpected" else key


@pytest.mark.parametrize("how", ["missing", "unexpected", "shape", "dtype", "nan", "inf"])
def test_bad_global_state_raises_naming_the_key_and_changes_nothing(parties, how):
    model = parties[2]
    before = model.global_state_dict()
    bad, key = corrupt(before, how)
    with pytest.raises(GlobalStateError, match=key.replace(".", r"\.")):
        model.load_global_state_dict(bad)
    after = model.global_state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)


def test_plain_ligo_has_no_local_state():
    model = grow(random_bert(), TARGET, model_class=BertForSequenceClassification)
    assert model.local_state_dict() == {}
    assert model.base_model.operator.local_stages is None


def test_several_sources_need_an_intermediate_shape():
    with pytest.raises(ValueError, match="intermediate"):
        grow([random_bert(0), random_bert(1)], TARGET, model_class=BertForSequenceClassification)


def test_several_sources_grow_through_one_intermediate():
    model = grow(
        [random_bert(0, **SOURCES[0]), random_bert(1, **SOURCES[1])],
        TARGET,
        model_class=BertForSequenceClassification,
        intermediate_config=INTERMEDIATE,
    )
    assert len(model.base_model.operator.local_stages) == 2
    assert model(**token_batch()).logits.shape == (3, 2)


def test_parties_with_different_llamas_share_one_global_stage():
    """Decoders federate like encoders: sources of other depths, widths and key/value groups meet at one
    intermediate, and every party's Global stage is the one a server builds without any source."""
    intermediate = {"num_hidden_layers": 3, "hidden_size": 64, "intermediate_size": 128, "num_attention_heads": 8,
                    "num_key_value_heads": 4}
    target = llama_config(layers=4, hidden=128, heads=16, kv_heads=8)
    sources = [random_llama(seed=0), random_llama(seed=1, layers=3, hidden=48, heads=6, kv_heads=3, tied=True)]
    parties = [grow(source, target, intermediate_config=intermediate) for source in sources]
    states = [party.global_state_dict() for party in parties]
    assert {k: v.shape for k, v in states[0].items()} == {k: v.shape for k, v in states[1].items()}
    reference = initial_global_stage(target, parties[0].peft_config["default"]).state_dict()
    for state in states:
        assert state.keys() == reference.keys() and all(torch.equal(state[k], reference[k]) for k in reference)
