"""The operator's cheaper computation changes no value: factors every block shares applied to the source blocks
before depth mixing, a tensor's axes expanded in their cheapest order, and a training pass growing only its
tokens' rows of the word-embedding table (issue 28)."""

from __future__ import annotations

import pytest
import torch
from ligo_factories import (
    bert_config,
    gpt2_config,
    llama_config,
    random_bert,
    random_gpt2,
    random_llama,
    token_batch,
)
from torch.utils.flop_counter import FlopCounterMode
from transformers import BertForSequenceClassification, GPT2LMHeadModel, LlamaForCausalLM

from fedgrow_hf import grow
from fedgrow_hf.tuners.ligo import layer
from fedgrow_hf.tuners.ligo.shapes import TransformerWeights

WORD_EMBEDDINGS = "embeddings.word_embeddings.weight"

# case -> (the grown model, a batch); every target deeper than its source, so a whole growth takes the
# expand-then-mix order and one block the mix-then-expand order
CASES = {
    "bert": lambda: grow(random_bert(layers=2, hidden=32), bert_config(layers=3, hidden=64, num_labels=3),
                         model_class=BertForSequenceClassification),
    "bert-dual": lambda: grow([random_bert(layers=2, hidden=32), random_bert(seed=1, layers=1, hidden=16)],
                              bert_config(layers=4, hidden=64, num_labels=3), model_class=BertForSequenceClassification,
                              intermediate_config={"num_hidden_layers": 3, "hidden_size": 48, "num_attention_heads": 4,
                                                   "intermediate_size": 96}, width_init="random"),
    "llama-tied": lambda: grow(random_llama(tied=True), llama_config(layers=3, hidden=48, heads=6, kv_heads=3, tied=True),
                               model_class=LlamaForCausalLM),
    "gpt2": lambda: grow(random_gpt2(), gpt2_config(layers=3, hidden=64, heads=8), model_class=GPT2LMHeadModel),
}


@pytest.mark.parametrize("case", CASES)
def test_a_whole_growth_equals_its_blocks_grown_one_at_a_time(case):
    operator = CASES[case]().base_model.operator
    with torch.no_grad():
        whole = operator()
        for block in range(whole.num_layers):
            alone = operator(layers=[block])
            for name, stacked in whole.layers.items():
                torch.testing.assert_close(stacked[block], alone.layers[name][0], atol=1e-6, rtol=1e-5)


def _stage_flops(stage: layer.GrowthStage, weights) -> int:
    with FlopCounterMode(display=False) as counter:
        grown = stage(weights)
        sum(tensor.sum() for tensor in grown.layers.values()).backward()
    stage.zero_grad(set_to_none=True)
    return counter.get_total_flops()


def test_the_cheaper_order_grows_the_same_weights_with_fewer_operations(monkeypatch):
    """MiniLM -> BERT L8/H512 at an eighth of the width: mixing first and expanding axes in table order (what
    the operator did before) against the order it takes now."""
    model = grow(random_bert(layers=6, hidden=48, heads=12, ffn=192), bert_config(layers=8, hidden=64, heads=8, ffn=256),
                 model_class=BertForSequenceClassification)
    stage = model.base_model.operator.global_stage
    weights = TransformerWeights({}, model.base_model.operator.intermediate_weights().layers)
    cheaper, cheaper_flops = stage(weights), _stage_flops(stage, weights)
    monkeypatch.setattr(layer, "split_shared_axes", lambda axes: ({}, dict(axes)))
    monkeypatch.setattr(layer, "expansion_order", lambda shape, axes, factors: list(axes.items()))
    before = stage(weights)
    for name, stacked in before.layers.items():
        torch.testing.assert_close(cheaper.layers[name], stacked, atol=1e-6, rtol=1e-5)
    assert cheaper_flops < 0.8 * _stage_flops(stage, weights)  # 0.755 here, 0.71 at MiniLM's width


def _embedding_weight_during_the_pass(model, batch: dict) -> tuple[torch.Tensor, torch.Tensor]:
    """The input embedding's weight as its forward reads it, and the pass's logits."""
    seen = []
    embedding = model.get_input_embeddings()
    handle = embedding.register_forward_hook(lambda module, args, output: seen.append(module.weight.detach().clone()))
    try:
        logits = model(**batch).logits
    finally:
        handle.remove()
    return seen[0], logits


def test_a_training_pass_grows_only_its_tokens_rows_of_the_word_embeddings():
    model = CASES["bert"]().train()
    batch = token_batch()
    ids = batch["input_ids"].unique()
    with torch.no_grad():
        full = model.base_model.operator().shared[WORD_EMBEDDINGS]

    # the table the lookup reads holds the batch's rows alone, in token order, and no other row of the vocabulary
    weight, logits = _embedding_weight_during_the_pass(model, batch)
    assert len(ids) < len(full) and weight.shape == (len(ids), full.shape[1])
    torch.testing.assert_close(weight, full[ids], atol=1e-6, rtol=1e-5)
    logits.sum().backward()
    by_rows = {name: param.grad.clone() for name, param in model.named_parameters() if param.grad is not None}
    model.zero_grad(set_to_none=True)

    # The same pass on the whole table: the embeddings looked up outside the model read the weight whole
    embeds = model.get_input_embeddings()(batch["input_ids"])
    whole_logits = model(inputs_embeds=embeds, attention_mask=batch["attention_mask"]).logits
    torch.testing.assert_close(logits, whole_logits, atol=1e-6, rtol=1e-5)
    whole_logits.sum().backward()
    for name, param in model.named_parameters():
        if name in by_rows:
            torch.testing.assert_close(by_rows[name], param.grad, atol=1e-6, rtol=1e-4, msg=name)

    # Read after its pass, the weight is the whole grown table again
    torch.testing.assert_close(model.get_input_embeddings().weight.detach(), full, atol=1e-6, rtol=1e-5)


def test_a_lookup_of_ids_other_than_the_passs_own_is_refused():
    """Only the rows of the pass's input_ids exist in its table: a module that embeds other ids would read
    the wrong rows, so it is stopped with the reason."""
    model = CASES["bert"]().train()
    batch = token_batch()

    def other_ids(module, args, kwargs):
        return args, {**kwargs, "input_ids": (kwargs["input_ids"] + 1) % 120}

    handle = model.base_model.model.bert.embeddings.register_forward_pre_hook(other_ids, with_kwargs=True)
    try:
        with pytest.raises(RuntimeError, match="token ids other than this forward pass's input_ids"):
            model(**batch)
    finally:
        handle.remove()
    assert model(**batch).logits.isfinite().all()  # the next pass is served as usual


@pytest.mark.parametrize("case", ["llama-tied", "gpt2"])
def test_a_table_tied_to_the_lm_head_is_grown_whole(case):
    """The LM head reads every row of a tied table, so no pass may grow only its tokens' rows."""
    model = CASES[case]().train()
    batch = {"input_ids": token_batch()["input_ids"] % 100}
    weight, _ = _embedding_weight_during_the_pass(model, batch)
    assert weight.abs().sum(-1).gt(0).all()
