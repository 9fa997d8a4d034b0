"""``LiGOConfig.grow_heads``: a classifier source's trained head grown into the target's (as the Fed-Grow authors'
``LiGOBERT`` grows the classifier), so the grown model starts computing the source's logits; a fresh head where
the sources have none of the target's shape."""

from __future__ import annotations

import warnings

import pytest
import torch
from transformers import BertForSequenceClassification, BertForTokenClassification

from fedgrow_hf import grow
from fedgrow_hf.tuners.ligo import LosslessGrowthWarning
from tests.ligo_factories import bert_config, perturbed, token_batch

SOURCE = {"layers": 2, "hidden": 32, "heads": 4}
TARGET = {"layers": 3, "hidden": 64, "heads": 8}
INTERMEDIATE = {"num_hidden_layers": 3, "hidden_size": 64, "num_attention_heads": 8, "intermediate_size": 128}


def classifier_source(seed: int = 0, labels: int = 3, model_class: type = BertForSequenceClassification, **shape):
    torch.manual_seed(seed)
    return perturbed(model_class(bert_config(**{**SOURCE, **shape}, num_labels=labels)))


def grown(source, target: dict = TARGET, labels: int = 3, **ligo):
    with warnings.catch_warnings():
        warnings.simplefilter("error", LosslessGrowthWarning)
        return grow(source, bert_config(**target, num_labels=labels), model_class=BertForSequenceClassification,
                    modules_to_save=["classifier"], **ligo).eval()


@pytest.mark.parametrize("width_structure", ["head_kronecker", "dense"])
def test_a_grown_head_starts_with_the_sources_logits(width_structure):
    source = classifier_source()
    model = grown(source, grow_heads=True, width_structure=width_structure)
    batch = token_batch()
    with torch.no_grad():
        torch.testing.assert_close(model(**batch).logits, source(**batch).logits, atol=1e-5, rtol=1e-4)
    config = model.peft_config["default"]
    assert config.grown_heads == ["classifier"] and "classifier" not in (config.modules_to_save or [])
    # the head is the operator's output: it has no trainable parameter of its own, and trains through the operator
    assert not any("classifier" in name for name, param in model.named_parameters() if param.requires_grad)
    model.train()
    model(**batch).logits.sum().backward()
    assert any(param.grad is not None and param.grad.abs().sum() > 0 for param in model.base_model.operator.parameters())


def test_a_grown_head_through_both_dual_ligo_stages():
    source = classifier_source()
    model = grown(source, target={"layers": 4, "hidden": 128, "heads": 8}, grow_heads=True,
                  intermediate_config=INTERMEDIATE)
    batch = token_batch()
    with torch.no_grad():
        torch.testing.assert_close(model(**batch).logits, source(**batch).logits, atol=1e-5, rtol=1e-4)
    intermediate = model.base_model.intermediate_state_dict()
    assert intermediate["shared.classifier.weight"].shape == (3, 64)
    assert torch.equal(intermediate["shared.classifier.bias"], source.classifier.bias.detach())


def test_merge_keeps_the_grown_head_and_owns_its_weights():
    source = classifier_source()
    model = grown(source, grow_heads=True)
    batch = token_batch()
    with torch.no_grad():
        before = model(**batch).logits
        merged = model.merge_and_unload().eval()
        torch.testing.assert_close(merged(**batch).logits, before)
    assert merged.classifier.bias.data_ptr() != source.classifier.bias.data_ptr()


@pytest.mark.parametrize("case", ["encoder", "other-labels", "token-classifier", "not-asked"])
def test_without_a_matching_head_the_target_keeps_its_own(case):
    from tests.ligo_factories import random_bert

    source = {"encoder": lambda: random_bert(**SOURCE),
              "other-labels": lambda: classifier_source(labels=2),
              "token-classifier": lambda: classifier_source(model_class=BertForTokenClassification),
              "not-asked": classifier_source}[case]()
    model = grow(source, bert_config(**TARGET, num_labels=3), model_class=BertForSequenceClassification,
                 modules_to_save=["classifier"], grow_heads=case != "not-asked")
    config = model.peft_config["default"]
    assert config.grown_heads == ([] if case != "not-asked" else None)
    assert any("classifier" in name for name, param in model.named_parameters() if param.requires_grad)


def test_an_adapter_with_a_grown_head_reloads_and_merges_from_its_classifier_source(tmp_path):
    """The adapter holds no head weights (the operator grows them), and records ``grown_heads``: reloaded or
    merged (in memory and streamed) from the classifier checkpoint it was grown from, it computes the source's
    logits; given an encoder checkpoint instead, it refuses rather than grow a random head."""
    from safetensors.torch import load_file
    from transformers import AutoModelForSequenceClassification, BertModel

    from fedgrow_hf.export import load_grown, merge_adapter, write_merged
    from fedgrow_hf.tuners.ligo.model import ArchitectureMismatchError

    source = classifier_source()
    source.save_pretrained(tmp_path / "source")
    model = grown(str(tmp_path / "source"), grow_heads=True)
    model.save_pretrained(tmp_path / "adapter")
    assert not any("classifier" in key for key in load_file(str(tmp_path / "adapter" / "adapter_model.safetensors")))
    batch = token_batch()
    with torch.no_grad():
        expected = source(**batch).logits
        sources = [tmp_path / "source"]  # the adapter names a local source by its folder's name only
        torch.testing.assert_close(load_grown(tmp_path / "adapter", sources=sources).eval()(**batch).logits, expected,
                                   atol=1e-5, rtol=1e-4)
        torch.testing.assert_close(merge_adapter(tmp_path / "adapter", sources=sources).eval()(**batch).logits,
                                   expected, atol=1e-5, rtol=1e-4)
        write_merged(tmp_path / "adapter", tmp_path / "merged", sources=sources)
        streamed = AutoModelForSequenceClassification.from_pretrained(tmp_path / "merged").eval()
        torch.testing.assert_close(streamed(**batch).logits, expected, atol=1e-5, rtol=1e-4)
    BertModel(source.config).save_pretrained(tmp_path / "encoder")
    with pytest.raises(ArchitectureMismatchError, match="grows 'classifier' from its sources' own"):
        load_grown(tmp_path / "adapter", sources=[tmp_path / "encoder"])


def test_a_grown_head_leaves_the_global_ligo_what_it_was():
    """What a Fed-Grow party sends is its Global-LiGO: growing the head adds nothing to it (same keys, shapes and
    starting values as a fresh-head growth, and as the server's reference built without any source), so only the
    Global-LiGO still leaves a party."""
    from fedgrow_hf.tuners.ligo import LiGOConfig, initial_global_stage

    target = bert_config(layers=4, hidden=128, heads=8, num_labels=3)
    grown_head, fresh_head = (grown(classifier_source(), target={"layers": 4, "hidden": 128, "heads": 8},
                                    grow_heads=flag, intermediate_config=INTERMEDIATE).base_model.global_state_dict()
                              for flag in (True, False))
    reference = initial_global_stage(target, LiGOConfig(intermediate_config=INTERMEDIATE)).state_dict()
    assert grown_head.keys() == fresh_head.keys() == reference.keys()
    assert all(torch.equal(grown_head[key], fresh_head[key]) for key in reference)
    assert all(grown_head[key].shape == reference[key].shape for key in reference)
    assert not any("classifier" in key for key in grown_head)
