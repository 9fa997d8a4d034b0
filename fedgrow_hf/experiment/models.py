"""The models of an experiment: a config's classification model, the grown classifier, the target's and a
source's config, and where a party's source checkpoint lies."""

from __future__ import annotations

from typing import Any

import torch
from accelerate import init_empty_weights
from peft import PeftModel
from transformers import (
    AutoModelForImageClassification,
    AutoModelForSequenceClassification,
    PretrainedConfig,
    PreTrainedModel,
)
from transformers.models.auto.modeling_auto import (
    MODEL_FOR_CAUSAL_LM_MAPPING,
    MODEL_FOR_IMAGE_CLASSIFICATION_MAPPING,
    MODEL_FOR_SEQUENCE_CLASSIFICATION_MAPPING,
)

from ..architectures import ARCHITECTURE_TABLES, get_architecture_table
from ..growth import grow
from ..sources import minilm_path
from ..tuners.ligo import materialize_meta_parameters
from .config import IMAGES, FederationConfig, PartySettings
from .config import NO_DROPOUT as NO_DROPOUT  # where fedgrow_hf.reproduce and federated.task import it from
from .tasks import Task, task_of

# a party's ``source``/``derive.from`` (and ``[data].tokenizer``) naming the bundled all-MiniLM-L6-v2
MINILM = "minilm"
# The head a growth does not produce: trained and saved in full with the operator.
HEAD_MODULES = ["classifier"]
# what a shared head's tensors are called beside the Global-LiGO's in a round's state ([federation].share_head)
HEAD_PREFIX = "head."
# PEFT's task type of a decoder's LiGO model: PeftModelForCausalLM, which generates.
CAUSAL_LM_TASK = "CAUSAL_LM"
# model types whose classification model classifies images; every other one classifies text
IMAGE_MODEL_TYPES = ("vit",)


def is_image_model(config: PretrainedConfig) -> bool:
    return config.model_type in IMAGE_MODEL_TYPES


class TaskMismatchError(ValueError):
    """A model that cannot do the task asked of it: a classifier's encoder as a language model, or the reverse."""


def check_task(config: PretrainedConfig, causal_lm: bool) -> None:
    """Refuse a source whose architecture is not the task's: a decoder for a causal language model, an
    encoder for a classifier (a decoder's role table grows its output embedding, which a classifier lacks)."""
    table = get_architecture_table(config)
    if table.causal_lm == causal_lm:
        return
    decoders = sorted(name for name, other in ARCHITECTURE_TABLES.items() if other.causal_lm)
    if causal_lm:
        raise TaskMismatchError(f"model_type {config.model_type!r} is no decoder language model: a causal-LM growth "
                                f"needs one of {decoders}")
    raise TaskMismatchError(f"model_type {config.model_type!r} is a decoder language model: grow it as a causal "
                            "language model (fedgrow grow --task causal-lm), not as a classifier")


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
    return _seeded_grow(source, config, seed, model_class=classification_model_class(config),
                        intermediate_config=intermediate_config, modules_to_save=HEAD_MODULES, **ligo_kwargs)


def grow_causal_lm(
    source: str | PreTrainedModel | list[str | PreTrainedModel],
    config: PretrainedConfig,
    *,
    intermediate_config: PretrainedConfig | dict[str, int] | None = None,
    seed: int = 0,
    **ligo_kwargs: Any,
) -> PeftModel:
    """The LiGO model of the decoder ``config`` (its architecture's ``*ForCausalLM``) as PEFT's causal-LM
    wrapper, which can ``generate``; a decoder has no new head, its output embedding is grown.

    ``seed`` seeds any random part of the operator's initialisation."""
    return _seeded_grow(source, config, seed, intermediate_config=intermediate_config, task_type=CAUSAL_LM_TASK,
                        **ligo_kwargs)


def _seeded_grow(source: str | PreTrainedModel | list[str | PreTrainedModel], config: PretrainedConfig, seed: int,
                 **grow_kwargs: Any) -> PeftModel:
    """``grow`` with torch's generator seeded by ``seed`` (new heads) and the operator's ``init_seed`` too."""
    torch.manual_seed(seed)
    return grow(source, config, **{"init_seed": seed, **grow_kwargs})


def task_model_class(config: PretrainedConfig) -> type[PreTrainedModel]:
    """The model a growth of ``config`` builds: a decoder's ``*ForCausalLM``, else its classification model."""
    if get_architecture_table(config).causal_lm:
        return MODEL_FOR_CAUSAL_LM_MAPPING[type(config)]
    return classification_model_class(config)


def model_classes(config: FederationConfig) -> tuple[type[PretrainedConfig], type[PreTrainedModel]]:
    """The config class of ``[model].family`` and its model: a classifier, or a causal language model."""
    config_class = config.family.config_class
    return config_class, task_model_class(config_class())


def target_config(config: FederationConfig) -> PretrainedConfig:
    """The grown model's config: ``[model].target`` + a classifier's label count (+ image geometry for ViT)."""
    config_class, _ = model_classes(config)
    geometry: dict[str, Any] = {}
    if config.family.data == IMAGES:
        geometry = {"image_size": config.data.image_size, "num_channels": config.data.num_channels}
    labels = {"num_labels": config.model.num_labels} if config.family.classifies else {}
    return config_class(**{**config.family.defaults, **geometry, **config.model.target, **labels})


def experiment_task(config: FederationConfig) -> Task:
    """What the experiment's parties train and score their models for (:func:`~.tasks.task_of` its target)."""
    return task_of(target_config(config))


def grow_party_model(config: FederationConfig, source: PreTrainedModel) -> PeftModel:
    """A party's Dual-LiGO model of ``source`` into the target: a classifier whose head is seeded by the config
    (the same in every party), or a causal language model."""
    grow_task = grow_classifier if config.family.classifies else grow_causal_lm
    return grow_task(source, target_config(config), intermediate_config=dict(config.model.intermediate),
                     seed=config.seed, **config.model.ligo)


def shared_heads(config: FederationConfig) -> tuple[str, ...]:
    """The target modules whose trained weights a party sends beside its Global-LiGO: the task head with
    ``[federation].share_head``, else none."""
    return tuple(HEAD_MODULES) if config.federation.share_head else ()


def initial_head_state(config: FederationConfig) -> dict[str, torch.Tensor]:
    """The shared heads as a party's grown model starts them (:func:`grow_party_model`: the target's own
    initialisation after ``torch.manual_seed(config.seed)``), under :data:`HEAD_PREFIX`: the server's first
    state of a ``share_head`` federation; empty without it. Only the heads are allocated; torch's global
    generator is left as it was."""
    heads = shared_heads(config)
    if not heads:
        return {}
    _, model_class = model_classes(config)
    state: dict[str, torch.Tensor] = {}
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.seed)
        with init_empty_weights(include_buffers=False):
            model = model_class(target_config(config))
        for name in heads:
            head = model.get_submodule(name)
            materialize_meta_parameters(model, torch.device("cpu"), within=head)
            state.update({f"{HEAD_PREFIX}{name}.{key}": value.detach().clone() for key, value in head.state_dict().items()})
    return state


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
