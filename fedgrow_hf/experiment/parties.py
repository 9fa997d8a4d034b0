"""A party's models, built from the experiment config: its private source (loaded, derived, distilled,
pretrained or random) and its Dual-LiGO model, and the reference shapes every party's updates have.

Building is deterministic in ``(config, party)``: a party's source and its initial operator are the same
in every process.
"""

from __future__ import annotations

from pathlib import Path

import torch
from peft import PeftModel
from transformers import PreTrainedModel

from ..architectures import get_architecture_table
from ..data import load_image_classification, resize_images
from ..decoder_sources import pretrain_causal_lm_source
from ..sources import derive_bert_source, distilled_bert_source, pretrain_bert_source, pretrain_vit_source
from ..tuners.ligo import GrowthStage, LiGOConfig, TransformerWeights, initial_global_stage, load_source_model
from .config import BERT_PRETRAIN_RECIPE, IMAGES, FederationConfig
from .data import party_datasets, party_shares
from .models import (
    classification_model_class,
    grow_party_model,
    initial_head_state,
    model_classes,
    parent_path,
    source_config,
    source_path,
    target_config,
)


def load_source(config: FederationConfig, party_id: int) -> PreTrainedModel:
    """The party's private source model: loaded, derived from another one, pretrained, or randomly initialised
    (as its architecture loads: an encoder, or a decoder with its output embedding)."""
    party = config.parties[party_id]
    table = get_architecture_table(target_config(config))
    if party.random is not None:
        # a random source of the given shape, otherwise like the target (vocabulary, positions ...); with a random
        # head of the task's labels where the grown model grows its head from the source's
        torch.manual_seed(config.data_seed + 1000 + party_id)
        shape = source_config(config, party.random)
        if not config.model.grows_heads:
            return table.auto_class.from_config(shape)
        shape.num_labels = config.model.num_labels
        return model_classes(config)[1](shape)
    if party.derive is not None:
        return _derived_bert_source(config, party_id)
    if party.pretrain is not None:
        if config.family.data == IMAGES:
            return _pretrained_vit_source(config, party_id)
        return _pretrained_text_source(config, party_id)
    with_head = classification_model_class(target_config(config)) if config.model.grows_heads else None
    return load_source_model(source_path(party), table, with_head=with_head)


def _pretrained_text_source(config: FederationConfig, party_id: int) -> PreTrainedModel:
    """A source trained from scratch on the party's own training share (the Fed-Grow authors' round 1): a BERT
    as a classifier, a decoder as a language model of its text; cached, so every round, method and seed of a
    comparison reuses it (its seed is the data seed)."""
    settings = dict(config.parties[party_id].pretrain)
    recipe = {name: settings.pop(name) for name in BERT_PRETRAIN_RECIPE if name in settings}
    train, _ = party_datasets(config, party_id)
    shape = source_config(config, settings)
    cache = Path(config.data.source_cache).expanduser()
    if not config.family.classifies:
        return pretrain_causal_lm_source(shape, train, seed=config.data_seed + party_id, cache_dir=cache, **recipe)
    shape.num_labels = config.model.num_labels
    return pretrain_bert_source(shape, train, seed=config.data_seed + party_id, cache_dir=cache,
                                with_head=config.model.grows_heads, **recipe)


def _derived_bert_source(config: FederationConfig, party_id: int) -> PreTrainedModel:
    """A BERT cut out of its parent (MiniLM unless ``from`` says otherwise); with ``distill_steps``, then
    distilled from the parent on the party's own training sentences (cached, so every round reuses it)."""
    shape = dict(config.parties[party_id].derive)
    parent = parent_path(config.parties[party_id])
    shape.pop("from", None)
    steps = int(shape.pop("distill_steps", 0))
    if not steps:
        return derive_bert_source(parent, **shape)
    train, _ = party_shares(config, party_id)
    return distilled_bert_source(
        parent, list(train["text"]), shape=shape, steps=steps, max_length=config.data.max_length,
        seed=config.data_seed + party_id, cache_dir=Path(config.data.source_cache).expanduser(),
    )


def _pretrained_vit_source(config: FederationConfig, party_id: int) -> PreTrainedModel:
    """A tiny ViT pretrained on ``data`` (the ``train`` split of an image source, e.g. a public dataset
    kept out of the evaluation) or, without it, on the party's own training share; cached, so every
    round reuses it."""
    settings = dict(config.parties[party_id].pretrain)
    steps = int(settings.pop("steps", 100))
    data = settings.pop("data", None)
    if data is None:
        images = party_datasets(config, party_id)[0].rename_column("labels", "label")
    else:
        images = resize_images(load_image_classification(data, "train"), config.data.image_size,
                               config.data.num_channels)
    return pretrain_vit_source(
        source_config(config, settings), images, steps=steps, seed=config.data_seed + party_id,
        cache_dir=Path(config.data.source_cache).expanduser(),
    )


def build_party_model(config: FederationConfig, party_id: int) -> PeftModel:
    """The party's Dual-LiGO model: its source -> Local-LiGO -> (shared) Global-LiGO -> target."""
    return grow_party_model(config, load_source(config, party_id))


def reference_global_stage(config: FederationConfig) -> GrowthStage:
    """The initial Global-LiGO stage every party starts from (each party grows one source), built by the
    operator's own code without any source, so the server can validate updates against it."""
    ligo = LiGOConfig(intermediate_config=dict(config.model.intermediate), init_seed=config.seed, **config.model.ligo)
    return initial_global_stage(target_config(config), ligo)


def reference_shared_state(config: FederationConfig) -> dict[str, torch.Tensor]:
    """What every party receives and sends each phase-1 round, as it starts: the Global-LiGO stage, and with
    ``share_head`` the task head (:func:`~.models.initial_head_state`). The server validates every reply and
    aggregate against it."""
    return {**reference_global_stage(config).state_dict(), **initial_head_state(config)}


def reference_intermediate_state(config: FederationConfig) -> dict[str, torch.Tensor]:
    """The keys, shapes and dtypes of a party's grown intermediate (``LiGOModel.intermediate_state_dict``), on
    the meta device: what a shared intermediate must be (``share_intermediate``). Like the operator, it
    holds the growable tensors of a model of the intermediate shape that a source of the target's family has,
    and with ``grow_heads`` the classifier grown through it."""
    _, model_class = model_classes(config)
    labels = {"num_labels": config.model.num_labels} if config.family.classifies else {}
    with torch.device("meta"):
        model = model_class(source_config(config, {**config.model.intermediate, **labels}))
    table = get_architecture_table(model.config)
    base = table.root_of(model)
    names = {name for name, _ in base.named_parameters()}
    block = {name for name, _ in base.get_submodule(table.layers_path)[0].named_parameters()}
    own = {name for name, _ in model.named_parameters()}
    heads = [name for name in table.head_axes if name in own] if config.model.grows_heads else []
    weights = TransformerWeights.from_base_model(
        base, table, [n for n in table.shared_axes if n in names], [n for n in table.layer_axes if n in block],
        model, heads)
    return weights.to_state_dict()


def reference_target_state(config: FederationConfig) -> dict[str, torch.Tensor]:
    """The grown model's state dict on the meta device: the keys, shapes and dtypes a phase-2 update of
    a federated fine-tuning must have, without allocating the model."""
    _, model_class = model_classes(config)
    with torch.device("meta"):
        return model_class(target_config(config)).state_dict()
