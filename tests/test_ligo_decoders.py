"""Decoder language models (Llama, GPT-2) grow losslessly by default: the grown model's logits are the source's.

Which shapes start exactly is argued in :mod:`fedgrow_hf.tuners.ligo.initialization`; every other shape
warns with its cause.
"""

from __future__ import annotations

import warnings

import pytest
import torch
from ligo_factories import (
    DECODER_VOCAB,
    gpt2_config,
    llama_config,
    qwen2_config,
    random_gpt2,
    random_llama,
    random_qwen2,
)
from transformers import AutoModelForCausalLM, GPT2LMHeadModel, LlamaForCausalLM

from fedgrow_hf import LosslessGrowthWarning, grow
from fedgrow_hf.export import load_grown, merge_adapter, write_merged
from fedgrow_hf.tuners.ligo.initialization import grouped_query_heads, norm_preserving_expansion

FAMILIES = {
    "llama": (random_llama, llama_config),
    "qwen2": (random_qwen2, qwen2_config),
    "gpt2": (random_gpt2, gpt2_config),
}
# (source shape, target shape) per family: every case is claimed exact
EXACT = {
    "llama": [
        ({}, {}),  # identity
        ({}, {"layers": 5}),  # deeper: new blocks with zero o_proj/down_proj (LLaMA Pro)
        ({}, {"ffn": 100}),  # wider SwiGLU FFN, not a multiple
        ({}, {"hidden": 64, "heads": 8, "kv_heads": 4, "ffn": 128}),  # residual x2, more heads and more groups
        ({}, {"layers": 3, "hidden": 48, "heads": 6, "kv_heads": 3, "ffn": 80}),  # residual x1.5: RMSNorm is exact
        ({}, {"hidden": 40, "heads": 5, "kv_heads": 5, "ffn": 64}),  # residual x1.25, grouped -> multi-head
        ({"kv_heads": 4}, {"hidden": 64, "heads": 8, "kv_heads": 4}),  # multi-head -> 2 query heads per group
        ({"tied": True}, {"hidden": 48, "heads": 6, "kv_heads": 3, "tied": True}),  # tied head, x1.5
        ({"tied": True}, {"layers": 3, "hidden": 64, "heads": 8, "kv_heads": 4}),  # tied source -> untied target
    ],
    "qwen2": [  # Llama's table with biased q/k/v; tied head
        ({}, {"layers": 3, "hidden": 48, "heads": 6, "kv_heads": 3, "ffn": 100}),
    ],
    "gpt2": [
        ({}, {}),
        ({}, {"layers": 5}),
        ({}, {"ffn": 200}),  # wider FFN (n_inner), not a multiple
        ({}, {"hidden": 64, "heads": 8}),  # residual x2, more heads
        ({}, {"layers": 3, "hidden": 64, "heads": 4, "ffn": 150}),  # wider heads (8 -> 16): no rotary to break
        ({}, {"layers": 4, "hidden": 96, "heads": 8}),  # residual x3, more and wider heads
        ({"scale_attn_by_inverse_layer_idx": True}, {"hidden": 64, "heads": 8, "scale_attn_by_inverse_layer_idx": True}),
    ],
}
EXACT_CASES = [(family, source, target) for family, cases in EXACT.items() for source, target in cases]


def decoder_batch(seed: int = 0) -> torch.Tensor:
    return torch.randint(0, DECODER_VOCAB, (3, 9), generator=torch.Generator().manual_seed(seed))


def logits(model, ids: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return model.eval()(input_ids=ids).logits


@pytest.mark.parametrize("width_structure", ["head_kronecker", "dense"])
@pytest.mark.parametrize("family,source_shape,target_shape", EXACT_CASES)
def test_default_decoder_growth_is_lossless(family, source_shape, target_shape, width_structure):
    make_source, make_config = FAMILIES[family]
    source = make_source(**source_shape)
    with warnings.catch_warnings():
        warnings.simplefilter("error", LosslessGrowthWarning)  # an exact growth must not warn
        model = grow(source, make_config(**target_shape), width_structure=width_structure)
    ids = decoder_batch()
    torch.testing.assert_close(logits(model, ids), logits(source, ids), atol=1e-5, rtol=0)


def test_dual_ligo_decoder_is_lossless_through_both_stages():
    """Two stages (32 -> 48 -> 64 wide, grouped attention all the way): each exact, so is the composition."""
    source = random_llama()
    intermediate = {"num_hidden_layers": 3, "hidden_size": 48, "intermediate_size": 96, "num_attention_heads": 6,
                    "num_key_value_heads": 3}
    with warnings.catch_warnings():
        warnings.simplefilter("error", LosslessGrowthWarning)
        model = grow(source, llama_config(layers=4, hidden=64, heads=8, kv_heads=4), intermediate_config=intermediate)
    ids = decoder_batch()
    torch.testing.assert_close(logits(model, ids), logits(source, ids), atol=1e-5, rtol=0)


@pytest.mark.parametrize(
    "family,source_shape,target_shape",
    [
        ("llama", {"tied": True}, {"layers": 3, "hidden": 64, "heads": 8, "tied": True}),
        ("qwen2", {}, {"layers": 3, "hidden": 64, "heads": 8}),
        ("gpt2", {}, {"layers": 3, "hidden": 64}),
    ],
)
def test_merged_decoder_keeps_the_function_and_its_tied_head(family, source_shape, target_shape):
    make_source, make_config = FAMILIES[family]
    source = make_source(**source_shape)
    merged = grow(source, make_config(**target_shape)).merge_and_unload()
    assert type(merged) is type(source)
    assert merged.get_output_embeddings().weight is merged.get_input_embeddings().weight
    ids = decoder_batch()
    torch.testing.assert_close(logits(merged, ids), logits(source, ids), atol=1e-5, rtol=0)


def test_new_decoder_blocks_start_with_zero_residual_writers():
    source = random_gpt2(layers=2)
    model = grow(source, gpt2_config(layers=3))
    new_block = model.base_model.model.transformer.h[1]
    for writer in (new_block.attn.c_proj, new_block.mlp.c_proj):
        assert not writer.weight.any() and not writer.bias.any()
    torch.testing.assert_close(new_block.attn.c_attn.weight, source.transformer.h[0].attn.c_attn.weight)


@pytest.mark.parametrize(
    "family,source_shape,target_shape,cause",
    [
        ("llama", {}, {"hidden": 64, "heads": 4}, "head_dim changes 8 -> 16 under rotary"),
        ("llama", {}, {"hidden": 64, "heads": 8, "kv_heads": 1}, "fewer or narrower heads"),  # 2 -> 1 key/value heads
        ("llama", {"hidden": 48, "heads": 6}, {"hidden": 48, "heads": 6, "kv_heads": 3}, "cannot hold a copy"),
        ("llama", {}, {"tied": True}, "ties .*lm_head.weight.* but source"),
        ("gpt2", {}, {"hidden": 48, "heads": 6}, "32 -> 48, not a multiple"),
        ("gpt2", {}, {"hidden": 64, "heads": 16}, "fewer or narrower heads"),
        ("gpt2", {"scale_attn_by_inverse_layer_idx": True}, {"layers": 3, "scale_attn_by_inverse_layer_idx": True},
         "depend on its index"),
    ],
)
def test_decoder_growth_that_cannot_start_exactly_warns(family, source_shape, target_shape, cause):
    make_source, make_config = FAMILIES[family]
    source = make_source(**source_shape)
    with pytest.warns(LosslessGrowthWarning, match=cause):
        model = grow(source, make_config(**target_shape))
    ids = decoder_batch()
    assert not torch.allclose(logits(model, ids), logits(source, ids), atol=1e-5, rtol=0)


def test_rms_norm_preserving_expansion():
    """Scaled copies keep the mean square of any vector exactly; integer ratios are the plain copies."""
    x = torch.randn(5, 32)
    for width in (32, 40, 48, 64, 75):
        producer, consumer = norm_preserving_expansion(width, 32)
        torch.testing.assert_close(producer.T @ producer, torch.eye(32) * width / 32)
        torch.testing.assert_close((x @ producer.T).pow(2).mean(-1), x.pow(2).mean(-1))
        # a reader of the norm output (gain grown like the stream: a second factor of the scale) reads x back
        torch.testing.assert_close(x @ (producer * producer).T @ consumer, x)
    producer, _ = norm_preserving_expansion(96, 32)
    assert set(producer.unique().tolist()) == {0.0, 1.0}


def test_grouped_query_heads_copy_the_heads_of_their_key_value_group():
    assert grouped_query_heads(8, 8, 4, 4) == [0, 1, 2, 3, 0, 1, 2, 3]  # multi-head attention: h mod H
    # 4 heads in 2 groups -> 8 heads in 2 groups: each target group holds its source group's 2 heads twice
    assert grouped_query_heads(8, 2, 4, 2) == [0, 1, 0, 1, 2, 3, 2, 3]
    # -> 4 heads in 4 groups: the two copies of each source group hold one of its heads each
    assert grouped_query_heads(4, 4, 4, 2) == [0, 2, 1, 3]
    for heads, groups in ((8, 4), (8, 2), (12, 6), (6, 6)):
        sources = grouped_query_heads(heads, groups, 4, 2)
        assert set(sources) == set(range(4))
        for head, copied in enumerate(sources):  # target group j copies source group j mod 2
            assert (head // (heads // groups)) % 2 == copied // 2


@pytest.mark.parametrize("model_class", [LlamaForCausalLM, GPT2LMHeadModel])
def test_decoder_sources_load_with_their_head(tmp_path, model_class):
    """A source given by path loads as a *ForCausalLM (its lm_head is grown), and so does the default target."""
    source = random_llama() if model_class is LlamaForCausalLM else random_gpt2()
    source.save_pretrained(tmp_path / "source")
    config = llama_config(hidden=64, heads=8, kv_heads=4) if model_class is LlamaForCausalLM else gpt2_config(hidden=64)
    model = grow(str(tmp_path / "source"), config)
    assert type(model.base_model.model) is model_class
    ids = decoder_batch()
    torch.testing.assert_close(logits(model, ids), logits(source, ids), atol=1e-5, rtol=0)


@pytest.mark.parametrize("family", FAMILIES)
def test_decoder_adapter_merges_in_low_memory(tmp_path, family):
    """fedgrow merge's two paths (built in place; streamed to disk) give the merged model's logits and class."""
    make_source, make_config = FAMILIES[family]
    source = make_source()
    source.save_pretrained(tmp_path / "source")
    model = grow(str(tmp_path / "source"), make_config(layers=3, hidden=64, heads=8), record_source_paths=True)
    ids = decoder_batch()
    expected = logits(model, ids)
    model.save_pretrained(tmp_path / "adapter")
    built = merge_adapter(tmp_path / "adapter")
    assert type(built) is type(source)
    torch.testing.assert_close(logits(built, ids), expected, atol=1e-6, rtol=0)
    written = AutoModelForCausalLM.from_pretrained(write_merged(tmp_path / "adapter", tmp_path / "merged"))
    assert type(written) is type(source)
    torch.testing.assert_close(logits(written, ids), expected, atol=1e-6, rtol=0)


def test_causal_lm_adapter_generates_and_reloads_as_one(tmp_path):
    """task_type="CAUSAL_LM" gives PEFT's causal-LM wrapper: it generates before any merge, and the adapter
    directory rebuilds as the same wrapper around a LlamaForCausalLM."""
    source = random_llama()
    source.save_pretrained(tmp_path / "source")
    target = llama_config(layers=3, hidden=48, heads=6, kv_heads=3)
    model = grow(str(tmp_path / "source"), target, task_type="CAUSAL_LM", record_source_paths=True)
    prompt = decoder_batch()[:, :4]
    generated = model.generate(input_ids=prompt, attention_mask=torch.ones_like(prompt), max_new_tokens=3,
                               do_sample=False, pad_token_id=0)
    assert torch.equal(generated, source.generate(prompt, attention_mask=torch.ones_like(prompt), max_new_tokens=3,
                                                  do_sample=False, pad_token_id=0))
    model.save_pretrained(tmp_path / "adapter")
    reloaded = load_grown(tmp_path / "adapter")
    assert type(reloaded) is type(model) and type(reloaded.base_model.model) is LlamaForCausalLM
    torch.testing.assert_close(logits(reloaded, prompt), logits(source, prompt), atol=1e-5, rtol=0)
