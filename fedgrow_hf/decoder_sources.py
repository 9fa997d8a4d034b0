"""Small decoder sources made reproducibly: a tokenizer learnt from a corpus, and a decoder pretrained on it.

No pretrained decoder small enough for tests and CPU benchmarks ships in a package here, so, as the Fed-Grow
authors do for their sources, small decoders are trained from scratch on the project's own text (SST-2
sentences, AG News articles), each cached under a hash of its recipe -- the machinery of
:mod:`fedgrow_hf.sources` (:func:`~fedgrow_hf.sources.cache_entry`, :func:`~fedgrow_hf.sources.train_from_scratch`,
:func:`~fedgrow_hf.sources.save_atomically`) -- so every test, round, method and seed reuses one identical source:

* :func:`corpus_tokenizer`: a byte-level BPE tokenizer learnt from the documents (GPT-2's kind, any text
  encodes), with one ``<|endoftext|>`` token ending each document and a ``<pad>``. A few thousand tokens
  rather than a pretrained tokenizer's 30-50 thousand keep a tiny decoder's output layer from being most of
  its compute;
* :func:`pretrain_causal_lm_source`: a decoder of the given config (its architecture's ``*ForCausalLM``:
  ``LlamaForCausalLM``, ``GPT2LMHeadModel`` ...) trained on the causal-LM loss over packed blocks
  (:func:`fedgrow_hf.data.pack_causal_lm`), saved with its tokenizer: a directory ``fedgrow grow --task
  causal-lm --source`` takes as a real user's checkpoint.
"""

from __future__ import annotations

import copy
import hashlib
from collections.abc import Sequence
from pathlib import Path

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import (
    PretrainedConfig,
    PreTrainedModel,
    PreTrainedTokenizerFast,
    default_data_collator,
)

from .architectures import get_architecture_table
from .sources import cache_entry, is_cached, save_atomically, scratch_recipe, train_from_scratch

END_OF_TEXT = "<|endoftext|>"
PADDING = "<pad>"


def corpus_tokenizer(
    documents: Sequence[str], *, vocab_size: int = 4096, cache_dir: str | Path | None = None
) -> PreTrainedTokenizerFast:
    """A byte-level BPE tokenizer of ``vocab_size`` tokens learnt from ``documents``, ending documents with
    ``<|endoftext|>`` (also its beginning-of-text token) and padding with ``<pad>``; reloaded from
    ``cache_dir/tokenizer-<key>`` (key: the documents and the vocabulary size) when learnt before."""
    if not documents:
        raise ValueError("corpus_tokenizer needs at least one document")
    digest = hashlib.sha256("\n".join(documents).encode()).hexdigest()
    key = hashlib.sha256(f"byte-level-bpe:{vocab_size}:{digest}".encode()).hexdigest()[:16]
    cached = Path(cache_dir) / f"tokenizer-{key}" if cache_dir is not None else None
    if cached is not None and (cached / "tokenizer.json").is_file():
        return PreTrainedTokenizerFast.from_pretrained(cached)
    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    bpe.train_from_iterator(documents, trainers.BpeTrainer(
        vocab_size=vocab_size, special_tokens=[END_OF_TEXT, PADDING], show_progress=False,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=bpe, eos_token=END_OF_TEXT, bos_token=END_OF_TEXT,
                                        pad_token=PADDING, model_input_names=["input_ids", "attention_mask"])
    if cached is not None:
        cached.parent.mkdir(parents=True, exist_ok=True)
        tokenizer.save_pretrained(cached)
    return tokenizer


def decoder_config(config_class: type[PretrainedConfig], tokenizer: PreTrainedTokenizerFast,
                   **shape: int) -> PretrainedConfig:
    """A decoder config of ``shape`` whose vocabulary and special tokens are ``tokenizer``'s, so that its
    ``generate`` stops and pads as the tokenizer does."""
    return config_class(**{"vocab_size": len(tokenizer), "pad_token_id": tokenizer.pad_token_id,
                           "bos_token_id": tokenizer.bos_token_id, "eos_token_id": tokenizer.eos_token_id, **shape})


def pretrain_causal_lm_source(
    config: PretrainedConfig,
    train_dataset,
    *,
    tokenizer: PreTrainedTokenizerFast | None = None,
    epochs: int = 1,
    batch_size: int = 32,
    learning_rate: float = 1e-3,
    weight_decay: float = 0.05,
    max_grad_norm: float = 1.0,
    seed: int = 0,
    cache_dir: str | Path | None = None,
) -> PreTrainedModel:
    """A decoder of ``config``'s shape trained from scratch on the causal-LM loss over ``train_dataset``
    (packed blocks: ``input_ids``, ``labels``) for ``epochs`` epochs, in eval mode.

    With ``cache_dir`` it is saved (with ``tokenizer``) under a hash of the config, the recipe and the data,
    and returned as loaded from there -- reloaded without training when that recipe ran before -- so its
    ``name_or_path`` is a directory that ``grow`` records and ``fedgrow grow --source`` takes.
    """
    table = get_architecture_table(config)
    if not table.causal_lm:
        raise ValueError(f"model_type {config.model_type!r} is no decoder language model")
    recipe = scratch_recipe(epochs, batch_size, learning_rate, weight_decay, max_grad_norm, seed, "causal-lm")
    cached = cache_entry(cache_dir, config, recipe, train_dataset)
    if is_cached(cached):
        return table.auto_class.from_pretrained(cached).eval()
    torch.manual_seed(seed)
    model = table.auto_class.from_config(copy.deepcopy(config))  # saving sets its dtype: keep the caller's key
    train_from_scratch(model, train_dataset, recipe, default_data_collator)
    if cached is None:
        return model.cpu().eval()
    save_atomically(model.cpu(), recipe, cached, tokenizer=tokenizer)
    return table.auto_class.from_pretrained(cached).eval()
