"""Tiny BERT/ViT/Llama/GPT-2 configs and models shared by the LiGO tests (random weights, no network)."""

from __future__ import annotations

import torch
from transformers import (
    BertConfig,
    BertModel,
    GPT2Config,
    GPT2LMHeadModel,
    LlamaConfig,
    LlamaForCausalLM,
    Qwen2Config,
    Qwen2ForCausalLM,
    ViTConfig,
    ViTModel,
)

DECODER_VOCAB = 100

NO_DROPOUT = {"hidden_dropout_prob": 0.0, "attention_probs_dropout_prob": 0.0}


def bert_config(
    layers: int = 2, hidden: int = 32, heads: int = 4, ffn: int | None = None, ffn_ratio: int = 2, **kwargs
) -> BertConfig:
    """The one tiny-BERT factory of the tests (no dropout; a 120-token vocabulary unless given)."""
    return BertConfig(
        num_hidden_layers=layers,
        hidden_size=hidden,
        num_attention_heads=heads,
        intermediate_size=ffn or ffn_ratio * hidden,
        **{"vocab_size": 120, "max_position_embeddings": 40, **NO_DROPOUT, **kwargs},
    )


def vit_config(layers: int = 2, hidden: int = 32, heads: int = 4, ffn: int | None = None, **kwargs) -> ViTConfig:
    return ViTConfig(
        num_hidden_layers=layers,
        hidden_size=hidden,
        num_attention_heads=heads,
        intermediate_size=ffn or 2 * hidden,
        **{"image_size": 16, "patch_size": 4, "num_channels": 1, **NO_DROPOUT, **kwargs},
    )


def llama_config(
    layers: int = 2, hidden: int = 32, heads: int = 4, kv_heads: int = 2, ffn: int | None = None, tied: bool = False,
    **kwargs,
) -> LlamaConfig:
    """A tiny Llama with grouped-query attention (4 query heads on 2 key/value heads) and an untied head."""
    return _grouped_decoder_config(LlamaConfig, layers, hidden, heads, kv_heads, ffn, tied, **kwargs)


def qwen2_config(
    layers: int = 2, hidden: int = 32, heads: int = 4, kv_heads: int = 2, ffn: int | None = None, tied: bool = True,
    **kwargs,
) -> Qwen2Config:
    """A tiny Qwen2 (biased query/key/value, grouped-query attention) with a tied head, as Qwen2.5-0.5B has."""
    return _grouped_decoder_config(Qwen2Config, layers, hidden, heads, kv_heads, ffn, tied, **kwargs)


def _grouped_decoder_config(
    config_class: type[LlamaConfig | Qwen2Config], layers: int, hidden: int, heads: int, kv_heads: int,
    ffn: int | None, tied: bool, **kwargs,
) -> LlamaConfig | Qwen2Config:
    return config_class(
        num_hidden_layers=layers,
        hidden_size=hidden,
        num_attention_heads=heads,
        num_key_value_heads=kv_heads,
        intermediate_size=ffn or 2 * hidden,
        tie_word_embeddings=tied,
        **{"vocab_size": DECODER_VOCAB, "max_position_embeddings": 64, "pad_token_id": 0, **kwargs},
    )


def gpt2_config(layers: int = 2, hidden: int = 32, heads: int = 4, ffn: int | None = None, **kwargs) -> GPT2Config:
    """A tiny GPT-2 (tied head); ``ffn=None`` keeps GPT-2's ``n_inner=None``: 4 x the hidden size."""
    return GPT2Config(
        n_layer=layers,
        n_embd=hidden,
        n_head=heads,
        n_inner=ffn,
        **{"vocab_size": DECODER_VOCAB, "n_positions": 64, "bos_token_id": 1, "eos_token_id": 2, "resid_pdrop": 0.0,
           "embd_pdrop": 0.0, "attn_pdrop": 0.0, **kwargs},
    )


def perturbed(model: torch.nn.Module) -> torch.nn.Module:
    """Random init leaves biases at 0 and LayerNorms at 1; a source with none of that tests more."""
    with torch.no_grad():
        for param in model.parameters():
            param.add_(0.05 * torch.randn_like(param))
    return model.eval()


def random_bert(seed: int = 0, **shape) -> BertModel:
    torch.manual_seed(seed)
    return perturbed(BertModel(bert_config(**shape)))


def random_vit(seed: int = 0, **shape) -> ViTModel:
    torch.manual_seed(seed)
    return perturbed(ViTModel(vit_config(**shape), add_pooling_layer=False))


def random_llama(seed: int = 0, **shape) -> LlamaForCausalLM:
    torch.manual_seed(seed)
    return perturbed(LlamaForCausalLM(llama_config(**shape)))


def random_qwen2(seed: int = 0, **shape) -> Qwen2ForCausalLM:
    torch.manual_seed(seed)
    return perturbed(Qwen2ForCausalLM(qwen2_config(**shape)))


def random_gpt2(seed: int = 0, **shape) -> GPT2LMHeadModel:
    torch.manual_seed(seed)
    return perturbed(GPT2LMHeadModel(gpt2_config(**shape)))


def token_batch(seed: int = 0, batch: int = 3, length: int = 9) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    ids = torch.randint(0, 120, (batch, length), generator=generator)
    return {"input_ids": ids, "attention_mask": torch.ones_like(ids)}


def pixel_batch(seed: int = 0, batch: int = 3) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    return {"pixel_values": torch.randn(batch, 1, 16, 16, generator=generator)}


def fold_back(grown: torch.Tensor, expand: torch.Tensor) -> torch.Tensor:
    """Map grown residual states back to the source's coordinates by averaging the duplicates.

    ``expand`` is the residual *out* factor (target x source, one 1 per row at duplication init).
    """
    counts = expand.sum(0)
    return grown @ expand / counts
