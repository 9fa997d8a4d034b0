"""Bad growth requests fail early with an error that names the problem."""

from __future__ import annotations

import pytest
import torch
from ligo_factories import (
    bert_config,
    gpt2_config,
    llama_config,
    random_bert,
    random_gpt2,
    random_vit,
    vit_config,
)
from torch import nn
from transformers import BertModel, GPT2Model, LlamaForCausalLM, OPTConfig, OPTModel, ViTModel

from fedgrow_hf import (
    ArchitectureMismatchError,
    GrowthShapeError,
    LiGOConfig,
    UnsupportedArchitectureError,
    grow,
)
from fedgrow_hf.tuners.ligo.grown import (
    GrownSlot,
    GrownWeightError,
    GrownWeights,
    grown_stand_in,
    parametrize_grown,
)


def test_source_and_target_of_different_families():
    with pytest.raises(ArchitectureMismatchError, match="'vit' model but the target is 'bert'"):
        grow(random_vit(), bert_config(hidden=64), model_class=BertModel)


def test_decoders_of_different_families():
    with pytest.raises(ArchitectureMismatchError, match="'gpt2' model but the target is 'llama'"):
        grow(random_gpt2(), llama_config(hidden=64))


def test_decoder_without_its_head_names_the_class_to_load():
    source = GPT2Model(gpt2_config())
    with pytest.raises(ArchitectureMismatchError, match="GPT2Model has no 'transformer.h'.*AutoModelForCausalLM"):
        grow(source, gpt2_config(hidden=64))


def test_decoder_fixed_fields():
    with pytest.raises(ArchitectureMismatchError, match="rms_norm_eps"):
        grow(LlamaForCausalLM(llama_config()), llama_config(hidden=64, rms_norm_eps=1e-3))


@pytest.mark.parametrize("shape, field", [({"hidden": 16, "heads": 4}, "hidden"), ({"layers": 1}, "num_layers"), ({"ffn": 32}, "ffn")])
def test_target_smaller_than_source(shape, field):
    with pytest.raises(GrowthShapeError, match=f"smaller than its source.*{field}"):
        grow(random_bert(hidden=32, ffn=64), bert_config(**{"hidden": 32, "ffn": 64, **shape}), model_class=BertModel)


def test_intermediate_smaller_than_source():
    mid = {"num_hidden_layers": 1, "hidden_size": 32, "intermediate_size": 64, "num_attention_heads": 4}
    with pytest.raises(GrowthShapeError, match="intermediate"):
        grow(random_bert(layers=2), bert_config(layers=4), model_class=BertModel, intermediate_config=mid)


def test_fields_growth_cannot_change():
    with pytest.raises(ArchitectureMismatchError, match="vocab_size"):
        grow(random_bert(), bert_config(hidden=64, vocab_size=99), model_class=BertModel)
    with pytest.raises(ArchitectureMismatchError, match="patch_size"):
        grow(random_vit(), vit_config(hidden=64, patch_size=8), model_class=ViTModel)


def test_unsupported_architecture():
    config = OPTConfig(num_hidden_layers=1, hidden_size=32, num_attention_heads=4, ffn_dim=64, vocab_size=50)
    with pytest.raises(UnsupportedArchitectureError, match="'opt'"):
        grow(OPTModel(config), config, model_class=OPTModel)


def test_target_must_be_a_transformers_model():
    from peft import get_peft_model

    with pytest.raises(TypeError, match="PreTrainedModel"):
        get_peft_model(nn.Linear(2, 2), LiGOConfig(source_model_name_or_path="unused"))


def test_missing_source_checkpoint(tmp_path):
    from peft import get_peft_model

    with pytest.raises(OSError, match="cannot load the LiGO source model"):
        get_peft_model(BertModel(bert_config()), LiGOConfig(source_model_name_or_path=str(tmp_path / "nope")))


def test_no_source_given():
    from peft import get_peft_model

    with pytest.raises(ValueError, match="source_model_name_or_path is not set"):
        get_peft_model(BertModel(bert_config()), LiGOConfig())


def test_fault_an_error_inside_a_grown_weight_surfaces_as_itself():
    """A grown weight is read through a property: an AttributeError raised while growing it would otherwise be
    taken for a missing attribute ("'Embedding' object has no attribute 'weight'"), hiding the cause."""
    embedding = nn.Embedding(4, 3)
    stand_in = grown_stand_in(embedding.weight, torch.device("cpu"))
    del embedding.weight
    embedding.weight = stand_in

    def broken_operator(rows, at_source_width):
        raise AttributeError("'NoneType' object has no attribute 'shape'")

    slot = GrownSlot("shared", "embeddings.weight", None, ((embedding, "weight"),), torch.Size([4, 3]))
    parametrize_grown([slot], GrownWeights([slot], broken_operator))
    with pytest.raises(GrownWeightError, match="growing weight slot 0 failed: AttributeError: 'NoneType' object "
                                               "has no attribute 'shape'"):
        embedding(torch.tensor([0, 1]))


def test_fault_merging_a_copy_leaves_the_original_grown_model_intact():
    """``copy.deepcopy`` keeps PyTorch's per-module parametrized class, and removing a parametrization deletes
    the weight's property from that class: merging a copy used to break the original (the in-process engine
    merges a copy of each party's cached model in phase 2, and the next federation in that process failed with
    "'ParametrizedEmbedding' object has no attribute 'weight'")."""
    import copy

    model = grow(random_bert(hidden=32, ffn=64), bert_config(layers=3, hidden=64, ffn=128), model_class=BertModel)
    ids = torch.tensor([[1, 5, 7, 2]])
    with torch.no_grad():
        before = model(input_ids=ids).last_hidden_state
        merged = copy.deepcopy(model).merge_and_unload(progressbar=False)
        torch.testing.assert_close(merged(input_ids=ids).last_hidden_state, before)
        torch.testing.assert_close(model(input_ids=ids).last_hidden_state, before)
