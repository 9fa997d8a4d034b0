"""Decoder federation: parties with different small Llamas (each pretrained on its own share of AG News) grow one
Llama together with Dual-LiGO, in this process; what leaves a party, in the encoder and the decoder case."""

from __future__ import annotations

import math

import pytest
from transformers import AutoTokenizer, LlamaForCausalLM

from fedgrow_hf.experiment.config import ConfigError, FederationConfig
from fedgrow_hf.experiment.data import party_datasets
from fedgrow_hf.experiment.parties import load_source
from fedgrow_hf.experiment.training import final_model_dir
from tests.federated.conftest import TINY_LLAMA_CONFIG, check_only_global_ligo_left

pytest.importorskip("flwr")


@pytest.mark.parametrize("run", [pytest.param("tiny_run", marks=pytest.mark.slow, id="encoder-ray"),
                                 pytest.param("tiny_llama_run", id="decoder-inprocess")])
def test_only_global_ligo_leaves_a_party(request, run):
    check_only_global_ligo_left(request.getfixturevalue(run))


def test_parties_with_different_llamas_grow_one_llama_and_keep_it(tiny_llama_run, minilm_path):
    config, run_dir = tiny_llama_run["config"], tiny_llama_run["dir"]
    sources = [load_source(config, party) for party in range(config.num_parties)]  # from the cache now
    assert [(s.config.num_hidden_layers, s.config.hidden_size) for s in sources] == [(1, 16), (2, 32)]
    assert all(type(source) is LlamaForCausalLM for source in sources)
    assert len([entry for entry in (run_dir.parent / "sources").iterdir() if not entry.name.startswith(".")]) == 2
    phases = [(report["phase"], report["round"]) for report in tiny_llama_run["reports"]]
    assert phases == [("operator", 1), ("operator", 2), ("finetune-local", 1)]
    for report in tiny_llama_run["reports"]:
        for party in report["parties"].values():  # next-token scores and the causal-LM loss of its held-out text
            assert 0 <= party["accuracy"] <= 1 and 0 < party["eval_loss"] < math.log(30522) + 1
    # each party keeps the merged grown Llama it fine-tuned: a plain causal LM that generates
    grown = LlamaForCausalLM.from_pretrained(final_model_dir(run_dir, 1)).eval()
    assert (grown.config.num_hidden_layers, grown.config.hidden_size, grown.config.num_key_value_heads) == (4, 64, 4)
    prompt = AutoTokenizer.from_pretrained(minilm_path, model_input_names=["input_ids", "attention_mask"])(
        "Stocks fell", return_tensors="pt")
    assert grown.generate(**prompt, max_new_tokens=3, min_new_tokens=3, do_sample=False).shape[1] == \
        prompt["input_ids"].shape[1] + 3
    train, held_out = party_datasets(config, 0)  # blocks of max_length tokens, labelled by themselves
    assert train[0]["input_ids"].shape == (config.data.max_length,) and len(held_out) > 0


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"data": {"partition": "dirichlet"}}, "a 'llama' federation's text has none: use partition = 'iid'"),
        ({"model": {"target": {"num_hidden_layers": 4, "hiden_size": 64}}}, "'hiden_size' -> 'hidden_size'"),
        ({"parties": [{"pretrain": {"hidden_size": 16, "steps": 3}}]}, "unknown keys in parties[0].pretrain: ['steps']"),
    ],
)
def test_a_decoder_federation_config_is_checked_before_it_runs(change, message):
    raw = FederationConfig.load(TINY_LLAMA_CONFIG).to_dict()
    for section, values in change.items():
        raw[section] = values if isinstance(values, list) else {**raw[section], **values}
    with pytest.raises(ConfigError, match=message.replace("[", r"\[").replace("]", r"\]")):
        FederationConfig.from_dict(raw)


def test_a_tokenizer_larger_than_the_target_vocabulary_is_refused(shared_data_dir):
    config = FederationConfig.load(TINY_LLAMA_CONFIG)
    config.data.source = str(shared_data_dir / "agnews")
    config.model.target["vocab_size"] = 1000
    with pytest.raises(ValueError, match="has 30,522 tokens, more than \\[model\\].target's vocab_size 1,000"):
        party_datasets(config, 0)
