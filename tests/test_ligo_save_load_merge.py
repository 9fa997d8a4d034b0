"""PEFT life cycle: save_pretrained -> PeftModel.from_pretrained -> merge_and_unload -> from_pretrained."""

from __future__ import annotations

import json
import weakref

import pytest
import torch
from ligo_factories import (
    DECODER_VOCAB,
    bert_config,
    gpt2_config,
    llama_config,
    pixel_batch,
    random_bert,
    random_gpt2,
    random_llama,
    random_vit,
    token_batch,
    vit_config,
)
from peft import PeftModel
from safetensors.torch import load_file
from transformers import (
    AutoModelForCausalLM,
    AutoModelForImageClassification,
    AutoModelForMaskedLM,
    AutoModelForSequenceClassification,
    BertForMaskedLM,
    BertForSequenceClassification,
    GPT2LMHeadModel,
    LlamaForCausalLM,
    ViTForImageClassification,
)

from fedgrow_hf import grow
from fedgrow_hf.tuners.ligo.layer import LiGOOperator


def decoder_batch() -> dict[str, torch.Tensor]:
    return {"input_ids": token_batch()["input_ids"] % DECODER_VOCAB}


# case -> (source factory, target config, target class, auto class, batch factory, the config's hidden-size key)
CASES = {
    "bert-seq-cls": (random_bert, bert_config(layers=3, hidden=64, num_labels=3), BertForSequenceClassification,
                     AutoModelForSequenceClassification, token_batch, "hidden_size"),
    "bert-mlm": (random_bert, bert_config(layers=3, hidden=64), BertForMaskedLM, AutoModelForMaskedLM, token_batch,
                 "hidden_size"),
    "vit": (random_vit, vit_config(layers=3, hidden=64, num_labels=3), ViTForImageClassification,
            AutoModelForImageClassification, pixel_batch, "hidden_size"),
    "llama": (random_llama, llama_config(layers=3, hidden=64, heads=8, kv_heads=4), LlamaForCausalLM,
              AutoModelForCausalLM, decoder_batch, "hidden_size"),
    "llama-tied": (lambda: random_llama(tied=True), llama_config(layers=3, hidden=48, heads=6, kv_heads=3, tied=True),
                   LlamaForCausalLM, AutoModelForCausalLM, decoder_batch, "hidden_size"),
    "gpt2": (random_gpt2, gpt2_config(layers=3, hidden=64, heads=8), GPT2LMHeadModel, AutoModelForCausalLM,
             decoder_batch, "n_embd"),
}


def logits(model, batch):
    model.eval()
    with torch.no_grad():
        return model(**batch).logits


@pytest.mark.parametrize("case", sorted(CASES))
def test_adapter_round_trip_and_merge(tmp_path, case):
    make_source, target_config, target_class, auto_class, make_batch, hidden_key = CASES[case]
    source = make_source()
    source.save_pretrained(tmp_path / "source")
    model = grow(  # the adapter records the source's path, so PEFT reloads it from the directory alone
        str(tmp_path / "source"), target_config, model_class=target_class, modules_to_save=None, record_source_paths=True
    )
    with torch.no_grad():  # a trained-looking operator, not the initialisation
        for param in model.base_model.operator.parameters():
            param.add_(0.01 * torch.randn_like(param))
    batch = make_batch()
    expected = logits(model, batch)

    model.save_pretrained(tmp_path / "adapter")
    saved = load_file(tmp_path / "adapter" / "adapter_model.safetensors")
    source_tensors = [p.detach() for p in source.parameters()]
    assert not any(
        value.shape == ref.shape and torch.equal(value, ref) for value in saved.values() for ref in source_tensors
    ), "a source weight was written into the adapter"
    assert all(".ligo_operator." in key or ".model." in key for key in saved)
    config = json.loads((tmp_path / "adapter" / "adapter_config.json").read_text())
    assert config["peft_type"] == "LIGO" and config["target_config"][hidden_key] == target_config.to_dict()[hidden_key]

    reloaded = PeftModel.from_pretrained(target_class(target_config), tmp_path / "adapter")
    assert torch.equal(logits(reloaded, batch), expected)

    merged = reloaded.merge_and_unload()
    assert type(merged) is target_class
    torch.testing.assert_close(logits(merged, batch), expected, atol=1e-6, rtol=0)
    merged.save_pretrained(tmp_path / "merged")
    plain = auto_class.from_pretrained(tmp_path / "merged")
    assert type(plain) is target_class
    torch.testing.assert_close(logits(plain, batch), expected, atol=1e-6, rtol=0)
    head = plain.get_output_embeddings()
    if head is not None and target_config.tie_word_embeddings:
        assert head.weight is plain.get_input_embeddings().weight
    if auto_class is AutoModelForCausalLM:
        prompt = batch["input_ids"][:, :4]
        generated = plain.generate(
            prompt, attention_mask=torch.ones_like(prompt), max_new_tokens=3, do_sample=False, pad_token_id=0
        )
        assert generated.shape == (prompt.shape[0], 7) and torch.equal(generated[:, :4], prompt)
        # greedy decoding continues with the merged model's own next-token choice
        assert torch.equal(generated[:, 4], logits(merged, {"input_ids": prompt})[:, -1].argmax(-1))


def test_merged_model_keeps_tied_embeddings():
    model = grow(random_bert(), bert_config(hidden=64), model_class=BertForMaskedLM)
    merged = model.merge_and_unload()
    assert merged.cls.predictions.decoder.weight is merged.bert.embeddings.word_embeddings.weight


@pytest.mark.parametrize("dual", [False, True], ids=["ligo", "dual-ligo"])
def test_merge_writes_each_grown_tensor_in_place_and_keeps_none_alive(monkeypatch, dual):
    """merge_and_unload() computes what the parametrized model computes; every merged weight is the very storage
    the operator grew it in (no copy, no larger tensor behind it), and no grown tensor -- a forward pass's, or
    one the merge grew -- outlives the merge."""
    sources = [random_bert()] + ([random_bert(seed=1, layers=3, hidden=48, heads=3)] if dual else [])
    intermediate = {"num_hidden_layers": 3, "hidden_size": 48, "intermediate_size": 96, "num_attention_heads": 3}
    model = grow(sources, bert_config(layers=3, hidden=64), model_class=BertForMaskedLM,  # tied embeddings
                 intermediate_config=intermediate if dual else None)
    with torch.no_grad():
        for param in model.base_model.operator.parameters():
            param.add_(0.01 * torch.randn_like(param))
    batch = token_batch()
    expected = logits(model, batch)
    read_by_forward = weakref.ref(model.base_model.model.bert.encoder.layer[1].intermediate.dense.weight)
    grown, storages = [], set()
    blockwise = LiGOOperator.grow_blockwise

    def recorded(operator, *args, **kwargs):
        for layer, weights in blockwise(operator, *args, **kwargs):
            tensors = [*weights.shared.values(), *weights.layers.values()]
            grown.extend(weakref.ref(tensor) for tensor in tensors)
            storages.update(tensor.untyped_storage().data_ptr() for tensor in tensors)
            del tensors
            yield layer, weights

    monkeypatch.setattr(LiGOOperator, "grow_blockwise", recorded)
    num_slots = len(model.base_model.grown_slots())
    merged = model.merge_and_unload()

    torch.testing.assert_close(logits(merged, batch), expected, atol=1e-6, rtol=0)
    assert read_by_forward() is None
    assert grown and all(ref() is None for ref in grown), "a grown tensor outlived its placement"
    placed = [param for param in merged.parameters() if param.untyped_storage().data_ptr() in storages]
    assert len(placed) == num_slots
    assert all(param.untyped_storage().nbytes() == param.numel() * param.element_size() for param in placed)


def test_unload_without_merge_is_refused():
    model = grow(random_bert(), bert_config(hidden=64), model_class=BertForSequenceClassification)
    with pytest.raises(ValueError, match="merge_and_unload"):
        model.unload()


def test_eval_reuses_grown_weights_until_the_operator_changes():
    model = grow(random_bert(), bert_config(hidden=64), model_class=BertForSequenceClassification).eval()
    batch = token_batch()
    first = logits(model, batch)
    assert torch.equal(logits(model, batch), first)
    with torch.no_grad():
        model.base_model.operator.global_stage.depth.mul_(0.5)
    assert not torch.allclose(logits(model, batch), first)


def test_blockwise_growth_grows_tables_by_rows_into_the_merge_dtype():
    """Merges grow embedding tables a slice of rows at a time, straight into the target dtype: same values."""
    model = grow(random_bert(), bert_config(layers=3, hidden=64))
    operator = model.base_model.operator
    with torch.no_grad():
        for param in operator.parameters():
            param.add_(0.01 * torch.randn_like(param))
        whole = operator()
        table = operator.intermediate_weights().shared["embeddings.word_embeddings.weight"]
        by_rows = operator.global_stage.grow_shared_by_rows("embeddings.word_embeddings.weight", table, rows=7)
    torch.testing.assert_close(by_rows, whole.shared["embeddings.word_embeddings.weight"])
    for layer, piece in operator.grow_blockwise(dtype=torch.bfloat16):
        expected = whole.shared if layer is None else {name: value[layer : layer + 1] for name, value in whole.layers.items()}
        got = piece.shared if layer is None else piece.layers
        assert got.keys() == expected.keys() and all(value.dtype == torch.bfloat16 for value in got.values())
        for name, value in got.items():
            torch.testing.assert_close(value, expected[name].to(torch.bfloat16))


def test_the_operator_keeps_its_own_copy_of_a_handed_in_source():
    """A user's later in-place edit of the source model they handed to grow() does not change the grown model."""
    source = random_bert()
    model = grow(source, bert_config(layers=3, hidden=64))
    before = model.base_model.operator().shared["embeddings.word_embeddings.weight"].detach().clone()
    with torch.no_grad():
        for param in source.parameters():
            param.zero_()
    after = model.base_model.operator().shared["embeddings.word_embeddings.weight"]
    torch.testing.assert_close(after, before)
