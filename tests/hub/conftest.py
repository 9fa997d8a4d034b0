"""Tiny grown models saved as LiGO adapter directories, shared by the hub/export/CLI tests."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from ligo_factories import perturbed


@pytest.fixture(scope="session")
def bert_source_dir(tmp_path_factory, minilm_path) -> Path:
    """A tiny random BERT source with MiniLM's tokenizer saved beside it (vocab 30,522)."""
    from transformers import AutoTokenizer, BertConfig, BertModel

    torch.manual_seed(0)
    config = BertConfig(
        num_hidden_layers=2,
        hidden_size=32,
        num_attention_heads=4,
        intermediate_size=64,
        max_position_embeddings=64,
    )
    model = BertModel(config)
    perturbed(model)
    path = tmp_path_factory.mktemp("bert_source")
    model.save_pretrained(path)
    AutoTokenizer.from_pretrained(minilm_path).save_pretrained(path)
    return path


@pytest.fixture(scope="session")
def bert_adapter_dir(tmp_path_factory, bert_source_dir) -> Path:
    """A LiGO adapter growing the tiny BERT (L2-H32) into BERT L3-H64 for 2-way classification."""
    from transformers import AutoConfig, BertForSequenceClassification

    import fedgrow_hf

    target = AutoConfig.from_pretrained(bert_source_dir)
    target.update(
        {"num_hidden_layers": 3, "hidden_size": 64, "num_attention_heads": 8, "intermediate_size": 128}
    )
    target.num_labels = 2
    model = fedgrow_hf.grow(
        str(bert_source_dir),
        target,
        model_class=BertForSequenceClassification,
        task_type="SEQ_CLS",
        modules_to_save=["classifier"],
        init_noise_std=0.05,
        record_source_paths=True,  # these adapters rebuild from their directory alone
    )
    path = tmp_path_factory.mktemp("bert_adapter")
    model.save_pretrained(path)
    return path


@pytest.fixture(scope="session")
def vit_adapter_dir(tmp_path_factory) -> Path:
    """A LiGO adapter without task_type (PEFT records the target class in auto_mapping): ViT image classifier."""
    from transformers import ViTConfig, ViTForImageClassification, ViTModel

    import fedgrow_hf

    shape = {"image_size": 16, "patch_size": 4, "num_channels": 1}
    torch.manual_seed(1)
    source = ViTModel(
        ViTConfig(num_hidden_layers=2, hidden_size=32, num_attention_heads=4, intermediate_size=64, **shape),
        add_pooling_layer=False,
    )
    perturbed(source)
    source_dir = tmp_path_factory.mktemp("vit_source")
    source.save_pretrained(source_dir)
    target = ViTConfig(
        num_hidden_layers=3,
        hidden_size=64,
        num_attention_heads=8,
        intermediate_size=128,
        num_labels=10,
        **shape,
    )
    model = fedgrow_hf.grow(
        str(source_dir),
        target,
        model_class=ViTForImageClassification,
        modules_to_save=["classifier"],
        init_noise_std=0.05,
        record_source_paths=True,  # these adapters rebuild from their directory alone
    )
    path = tmp_path_factory.mktemp("vit_adapter")
    model.save_pretrained(path)
    return path
