"""Tiny decoder sources trained from scratch on the project's text (SST-2 sentences, AG News articles), cached by
their recipe: a corpus-learnt tokenizer and a pretrained Llama / GPT-2 that grows like a user's checkpoint."""

from __future__ import annotations

import json

import datasets
import pytest
import torch
from transformers import BertConfig, GPT2Config, LlamaConfig

from fedgrow_hf import decoder_sources
from fedgrow_hf.cli import main
from fedgrow_hf.data import load_text_corpus, pack_causal_lm
from fedgrow_hf.decoder_sources import (
    END_OF_TEXT,
    corpus_tokenizer,
    decoder_config,
    pretrain_causal_lm_source,
)

SHAPES = {
    LlamaConfig: {"num_hidden_layers": 2, "hidden_size": 32, "num_attention_heads": 4, "num_key_value_heads": 2,
                  "intermediate_size": 64, "max_position_embeddings": 64, "tie_word_embeddings": True},
    GPT2Config: {"n_layer": 2, "n_embd": 32, "n_head": 4, "n_positions": 64},
}


@pytest.fixture(scope="module")
def sst2_sentences(shared_data_dir) -> list[str]:
    return list(load_text_corpus(str(shared_data_dir / "sst2"), "train", text_column="sentence", limit=400)["text"])


def test_the_corpus_tokenizer_is_learnt_reproducibly_and_encodes_any_text(tmp_path, sst2_sentences):
    tokenizer = corpus_tokenizer(sst2_sentences, vocab_size=512, cache_dir=tmp_path)
    assert len(tokenizer) == 512 and tokenizer.eos_token == tokenizer.bos_token == END_OF_TEXT
    assert tokenizer.pad_token_id != tokenizer.eos_token_id
    assert corpus_tokenizer(sst2_sentences, vocab_size=512).get_vocab() == tokenizer.get_vocab()  # learnt again
    text = "an unseen wörd, 3 digits: 042 ✓"  # byte-level: nothing is unknown
    assert tokenizer.decode(tokenizer(text)["input_ids"]) == text
    assert "token_type_ids" not in tokenizer(text)  # generate() takes what it gives
    cached = corpus_tokenizer(sst2_sentences, vocab_size=512, cache_dir=tmp_path)
    assert [path.name for path in tmp_path.iterdir()] == [next(tmp_path.iterdir()).name]  # one entry, reused
    assert cached.get_vocab() == tokenizer.get_vocab()


@pytest.mark.parametrize("config_class", [LlamaConfig, GPT2Config])
def test_a_decoder_pretrained_on_sst2_learns_and_is_reloaded_from_its_cache(tmp_path, monkeypatch, sst2_sentences,
                                                                            config_class):
    tokenizer = corpus_tokenizer(sst2_sentences, vocab_size=512)
    blocks = pack_causal_lm(datasets.Dataset.from_dict({"text": sst2_sentences}), tokenizer, block_size=32)
    held_out, blocks = blocks[-16:], blocks.select(range(len(blocks) - 16))
    config = decoder_config(config_class, tokenizer, **SHAPES[config_class])
    torch.manual_seed(0)
    untrained = decoder_sources.get_architecture_table(config).auto_class.from_config(config)
    model = pretrain_causal_lm_source(config, blocks, tokenizer=tokenizer, epochs=2, batch_size=8,
                                      learning_rate=3e-3, cache_dir=tmp_path)

    def loss(decoder) -> float:
        with torch.no_grad():
            return float(decoder.eval()(input_ids=held_out["input_ids"], labels=held_out["labels"]).loss)

    assert loss(model) < loss(untrained) - 0.5  # from ~ln(512) = 6.2 towards the corpus's statistics
    assert type(model).__name__ in ("LlamaForCausalLM", "GPT2LMHeadModel")
    recipe = json.loads((tmp_path / next(p.name for p in tmp_path.iterdir()) / "fedgrow_recipe.json").read_text())
    assert recipe["objective"] == "causal-lm" and recipe["epochs"] == 2
    # a second call with the same recipe and data trains nothing: it reloads the identical weights
    monkeypatch.setattr(decoder_sources, "train_from_scratch", lambda *args: pytest.fail("trained again"))
    again = pretrain_causal_lm_source(config, blocks, tokenizer=tokenizer, epochs=2, batch_size=8,
                                      learning_rate=3e-3, cache_dir=tmp_path)
    assert again.name_or_path == model.name_or_path
    for (name, value), (_, reloaded) in zip(model.state_dict().items(), again.state_dict().items()):
        assert torch.equal(value, reloaded), name


def test_a_pretrained_decoder_source_grows_with_fedgrow_grow(tmp_path, sst2_sentences, capsys):
    """The cached directory holds the decoder and its tokenizer: `fedgrow grow --task causal-lm` takes it as it
    would take a Hub checkpoint, here on AG News articles the source never saw."""
    tokenizer = corpus_tokenizer(sst2_sentences, vocab_size=512)
    blocks = pack_causal_lm(datasets.Dataset.from_dict({"text": sst2_sentences}), tokenizer, block_size=32)
    config = decoder_config(LlamaConfig, tokenizer, **SHAPES[LlamaConfig])
    source = pretrain_causal_lm_source(config, blocks, tokenizer=tokenizer, batch_size=8, cache_dir=tmp_path)
    target = {"num_hidden_layers": 3, "hidden_size": 64, "num_attention_heads": 8, "num_key_value_heads": 4,
              "intermediate_size": 128}
    corpus = tmp_path / "agnews.txt"
    corpus.write_text("\n".join(f"Article {i}: stocks rose as markets rallied on the news." for i in range(30)))
    assert main(["grow", "--task", "causal-lm", "--source", source.name_or_path, "--data", str(corpus),
                 "--target", json.dumps(target), "--max-steps", "1", "--finetune-steps", "1", "--batch-size", "4",
                 "--max-length", "16", "--output-dir", str(tmp_path / "grown")]) == 0
    assert "fine-tuned grown model: validation loss" in capsys.readouterr().out


def test_only_a_decoder_is_pretrained_as_a_causal_language_model():
    with pytest.raises(ValueError, match="model_type 'bert' is no decoder language model"):
        pretrain_causal_lm_source(BertConfig(), None)
