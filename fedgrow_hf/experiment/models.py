"""The models of an experiment: a config's classification model, the grown classifier, the target's and a
source's config, and where a party's source checkpoint lies."""

from __future__ import annotations

from typing import Any

import torch
from peft import PeftModel
from transformers import (
    AutoModelForImageClassification,
    AutoModelForSequenceClassification,
    BertConfig,
    PretrainedConfig,
    PreTrainedModel,
    ViTConfig,
)
from transformers.models.auto.modeling_auto import (
    MODEL_FOR_IMAGE_CLASSIFICATION_MAPPING,
    MODEL_FOR_SEQUENCE_CLASSIFICATION_MAPPING,
)

from ..growth import grow
from ..sources import minilm_path
from .config import FederationConfig, PartySettings

# a party's ``source``/``derive.from`` (and ``[data].tokenizer``) naming the bundled all-MiniLM-L6-v2
MINILM = "minilm"
NO_DROPOUT = {"hidden_dropout_prob": 0.0, "attention_probs_dropout_prob": 0.0}
# The head a growth does not produce: trained and saved in full with the operator.
HEAD_MODULES = ["classifier"]
# model types whose classification model classifies images; every other one classifies text
IMAGE_MODEL_TYPES = ("vit",)
# [model].family -> its transformers config class
FAMILY_CONFIGS: dict[str, type[PretrainedConfig]] = {"bert": BertConfig, "vit": ViTConfig}


def is_image_model(config: PretrainedConfig) -> bool:
    return config.model_type in IMAGE_MODEL_TYPES


def classification_model_class(config: PretrainedConfig) -> Any:
    """The classification model of ``config``'s model type (``BertForSequenceClassification``,
    ``ViTForImageClassification`` ...): images for ViT, text otherwise; the auto class for a config
    transformers does not map."""
    image = is_image_model(config)
    mapping = MODEL_FOR_IMAGE_CLASSIFICATION_MAPPING if image else MODEL_FOR_SEQUENCE_CLASSIFICATION_MAPPING
    if type(config) in mapping:
        return mapping[type(config)]
    return AutoModelForImageClassification if image else AutoModelForSequenceClassification


def grow_classifier(
    source: str | PreTrainedModel | list[str | PreTrainedModel],
    config: PretrainedConfig,
    *,
    intermediate_config: PretrainedConfig | dict[str, int] | None = None,
    seed: int = 0,
    **ligo_kwargs: Any,
) -> PeftModel:
    """The LiGO model of ``config``'s classifier: ``grow`` with the new head trained and saved in full.

    ``seed`` seeds the head's initialisation (torch's generator) and any random part of the operator's.
    """
    torch.manual_seed(seed)
    return grow(
        source,
        config,
        model_class=classification_model_class(config),
        intermediate_config=intermediate_config,
        modules_to_save=HEAD_MODULES,
        **{"init_seed": seed, **ligo_kwargs},
    )


def model_classes(config: FederationConfig) -> tuple[type[PretrainedConfig], type[PreTrainedModel]]:
    """The config class of ``[model].family`` and its classification model."""
    config_class = FAMILY_CONFIGS[config.model.family]
    return config_class, classification_model_class(config_class())


def target_config(config: FederationConfig) -> PretrainedConfig:
    """The grown model's config: ``[model].target`` + the task's label count (+ image geometry for ViT)."""
    config_class, _ = model_classes(config)
    extra: dict[str, Any] = {}
    if config.model.family == "vit":
        extra = {"image_size": config.data.image_size, "num_channels": config.data.num_channels}
    return config_class(**{**NO_DROPOUT, **extra, **config.model.target, "num_labels": config.model.num_labels})


def source_config(config: FederationConfig, shape: dict[str, Any]) -> PretrainedConfig:
    """A source config of ``shape``, otherwise like the target (vocabulary, positions, image geometry)."""
    fixed = target_config(config).to_dict()
    for name in ("num_labels", "id2label", "label2id", "architectures"):
        fixed.pop(name, None)
    return type(target_config(config))(**{**fixed, **shape})


def source_path(party: PartySettings) -> str:
    """Where the party's ``source`` checkpoint lies (``minilm``: the bundled MiniLM)."""
    return minilm_path() if party.source == MINILM else party.source


def parent_path(party: PartySettings) -> str:
    """Where the parent a party's ``derive`` table cuts its source out of lies (MiniLM unless ``from``)."""
    return source_path(PartySettings(source=(party.derive or {}).get("from", MINILM)))
