"""The operator's cheaper computation changes no value: factors every block shares applied to the source blocks
before depth mixing, a tensor's axes expanded in their cheapest order, and a training pass growing only its
tokens' rows of the word-embedding table (issue 28)."""

from __future__ import annotations

import copy
import functools

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
from torch.utils.checkpoint import checkpoint
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
                              bert_config(layers=4, hidden=64, ffn=256, num_labels=3), model_class=BertForSequenceClassification,
                              intermediate_config={"num_hidden_layers": 3, "hidden_size": 48, "num_attention_heads": 4,
                                                   "intermediate_size": 96}, width_init="random"),
    "llama-tied": lambda: grow(random_llama(tied=True), llama_config(layers=3, hidden=48, heads=6, kv_heads=3, ffn=192, tied=True),
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


# case -> (block module at the source's width in a training pass, the weight axis left at the source's width)
SOURCE_WIDTH_MODULES = {
    "bert": [("intermediate.dense", 1), ("output.dense", 0)],
    "bert-dual": [("intermediate.dense", 1), ("output.dense", 0)],
    "llama-tied": [("mlp.gate_proj", 1), ("mlp.up_proj", 1), ("mlp.down_proj", 0)],
    # Conv1D: [in, out]; its output keeps the width it was built with. At half the width, query, key and value
    # in one map cost 32 x (64 + 3 x 64) per token through the source's width against 64 x 3 x 64
    "gpt2": [("attn.c_attn", 0), ("mlp.c_fc", 0)],
}


def _blocks(model) -> torch.nn.ModuleList:
    table = model.base_model.operator.global_stage.table
    return table.root_of(model.base_model.model).get_submodule(table.layers_path)


def _first_block(model) -> torch.nn.Module:
    return _blocks(model)[0]


def _assert_same_gradients(model, reference) -> None:
    """Every parameter of ``model`` has the gradient its namesake in ``reference`` has, the operator's among them."""
    grads = {name: param.grad for name, param in model.named_parameters() if param.grad is not None}
    expected = {name: param.grad for name, param in reference.named_parameters() if param.grad is not None}
    assert grads.keys() == expected.keys() and any("ligo_operator" in name for name in grads)
    for name, grad in grads.items():
        torch.testing.assert_close(grad, expected[name], atol=1e-6, rtol=1e-4, msg=name)


def _batch(case: str) -> dict[str, torch.Tensor]:
    batch = token_batch()
    return batch if case.startswith("bert") else {"input_ids": batch["input_ids"] % 100}  # the decoders' vocabulary


def _block_weight_widths(model, modules, batch) -> list[tuple[int, ...]]:
    """The shapes the first block's ``modules`` read their weights with, in one pass over ``batch``."""
    block = _first_block(model)
    seen = []
    handles = [block.get_submodule(path).register_forward_pre_hook(lambda module, args: seen.append(tuple(module.weight.shape)))
               for path, _ in modules]
    try:
        model(**batch)
    finally:
        for handle in handles:
            handle.remove()
    return seen


@pytest.mark.parametrize("case", SOURCE_WIDTH_MODULES)
def test_a_training_pass_runs_the_ffn_through_the_source_width_with_the_same_values_and_gradients(case):
    """The residual factor of the FFN's maps is applied to their activations, not their weights (what a token costs
    less through, at any batch size): the loss and every gradient are those of the same pass on the whole grown
    weights, read outside a pass from a copy of the model and run through a plain copy of the target."""
    model = CASES[case]().train()
    reference_model = copy.deepcopy(model)
    plain = copy.deepcopy(model).base_model.merge_and_unload()  # the target's class, without the tuner
    stage = model.base_model.operator.global_stage
    modules = SOURCE_WIDTH_MODULES[case]
    assert sorted((m.module, dict(m.tensors)[f"{m.module}.weight"]) for m in model.base_model.source_width_maps()) == sorted(modules)
    full = [tuple(slot.shape) for path, _ in modules for slot in model.base_model.grown_slots()
            if slot.path == f"{path}.weight" and slot.layer == 0]
    batch = _batch(case)
    narrowed = _block_weight_widths(model, modules, batch)
    for (target, read), (_, axis) in zip(zip(full, narrowed, strict=True), modules, strict=True):
        assert read[axis] == stage.source_shape.hidden < target[axis] and read[1 - axis] == target[1 - axis]
    model.zero_grad(set_to_none=True)
    loss = model(**batch).logits.square().mean()
    loss.backward()

    inner = reference_model.base_model.model
    whole = {name: getattr(inner.get_submodule(name.rpartition(".")[0]), name.rpartition(".")[2])
             for name, _ in plain.named_parameters()}  # read outside a pass: grown whole, with the operator's graph
    reference = torch.func.functional_call(plain, whole, kwargs=batch).logits.square().mean()
    torch.testing.assert_close(loss, reference, atol=1e-6, rtol=1e-5)
    reference.backward()
    _assert_same_gradients(model, reference_model)
    with torch.no_grad():
        assert _block_weight_widths(model, modules, batch) == full  # passes without gradients read the weights whole
        assert [tuple(_first_block(model).get_submodule(path).weight.shape) for path, _ in modules] == full  # and a read


def test_the_ffn_runs_through_the_source_width_where_a_token_costs_less_there():
    """MiniLM -> BERT L8/H512's shapes: an FFN map through the source width costs 384 x (512 + 2048) per token
    against 512 x 2048; a query/key/value or output map 384 x (512 + 512) against 512 x 512, so those keep the
    target's width."""
    model = grow(random_bert(layers=6, hidden=384, heads=12, ffn=1536), bert_config(layers=8, hidden=512, heads=8, ffn=2048),
                 model_class=BertForSequenceClassification)
    maps = model.base_model.operator.global_stage.source_width_maps()
    assert [(m.module, m.side.value, m.factor, m.tensors) for m in maps] == [
        ("intermediate.dense", "in", "residual_in", (("intermediate.dense.weight", 1),)),
        ("output.dense", "out", "residual_out", (("output.dense.weight", 0), ("output.dense.bias", 0))),
    ]
    assert 384 * (512 + 2048) < 512 * 2048 and 384 * (512 + 512) > 512 * 512


@pytest.mark.parametrize("checkpointing", ["transformers", "torch.utils.checkpoint"])
def test_activation_checkpointing_recomputes_what_the_pass_computed_through_the_source_width(checkpointing):
    """The recomputation in backward runs after the pass and reads what the pass read: the weights at the source's
    width and the factors stay until the next pass (transformers' checkpointing, or a block wrapped by hand as FSDP's
    wrapper does); the gradients are those of the same pass without checkpointing. Read from outside its module, even
    then, a weight is whole, with the operator's graph."""
    model = CASES["bert"]().train()
    reference = copy.deepcopy(model)
    if checkpointing == "transformers":
        model.gradient_checkpointing_enable()
    else:
        for block in _blocks(model):
            block.forward = functools.partial(checkpoint, block.forward, use_reentrant=False)
    modules = SOURCE_WIDTH_MODULES["bert"]
    batch = _batch("bert")
    assert _block_weight_widths(model, modules, batch) == _block_weight_widths(reference, modules, batch)
    model.zero_grad(set_to_none=True)
    reference.zero_grad(set_to_none=True)
    for each in (model, reference):
        each(**batch).logits.square().mean().backward()
    _assert_same_gradients(model, reference)

    weight = _first_block(model).get_submodule("intermediate.dense").weight
    assert weight.shape == (model.config.intermediate_size, model.config.hidden_size) and weight.requires_grad


def test_a_source_width_map_called_with_its_input_by_name_computes_the_same():
    model = CASES["bert"]().train()
    batch = _batch("bert")
    expected = model(**batch).logits
    intermediate = _first_block(model).intermediate
    intermediate.forward = lambda hidden_states: intermediate.intermediate_act_fn(intermediate.dense(input=hidden_states))
    torch.testing.assert_close(model(**batch).logits, expected)
