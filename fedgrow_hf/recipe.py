"""The whole LiGO recipe in one call: grow, train the operator briefly, then the grown model, evaluate.

LiGO (Wang et al., ICLR 2023) trains only the growth operator for a short while -- it learns how to
map the small model's weights into the large one -- and then trains the grown model as usual; the
operator alone is not the end product. :func:`grow_and_train` (a classifier) and
:func:`grow_and_train_causal_lm` (a decoder language model) run both phases with ``transformers.Trainer``:

1. the operator phase: the LiGO operator (and a classifier's new head) for
   ``schedule.operator_steps`` steps at ``schedule.operator_learning_rate``;
2. the full-model phase: the LiGO model is merged (``merge_and_unload``) into a plain transformers
   model, all of whose weights train for ``schedule.finetune_steps`` steps at
   ``schedule.finetune_learning_rate`` (``finetune_steps=0`` stops after phase 1).

Both phases are evaluated on ``eval_dataset``: a classifier by accuracy, macro precision and macro F1
(the local metric modules), a decoder by its validation cross-entropy, perplexity and next-token accuracy.
``output_dir`` then holds the final model with its processor, ``eval_results.json`` and the project's
model card as ``README.md`` (each phase's figures in its training table); after a full-model phase the
operator-phase adapter sits in ``output_dir/ligo_adapter`` with its own results and card. ``fedgrow grow``
is these functions.
"""

from __future__ import annotations

import copy
import json
import os
import tempfile
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import datasets
from accelerate import PartialState
from peft import PeftModel
from transformers import (
    AutoModelForImageClassification,
    PretrainedConfig,
    PreTrainedModel,
    PreTrainedTokenizerBase,
    Trainer,
    TrainingArguments,
)

from .experiment.models import HEAD_MODULES, classification_model_class, grow_causal_lm, grow_classifier
from .experiment.recipe_data import UNNAMED_DATA, DatasetInfo
from .experiment.tasks import CAUSAL_LM, CLASSIFICATION, Task
from .hub import TrainingFacts, TrainingPhase, build_model_card

__all__ = [
    "ADAPTER_DIR",
    "CARD_FILE",
    "EVAL_RESULTS_FILE",
    "HEAD_MODULES",
    "LABEL_COLUMN",
    "LOGS_PER_PHASE",
    "DatasetInfo",
    "GrowthResult",
    "UNNAMED_DATA",
    "TrainingSchedule",
    "class_names",
    "classification_model_class",
    "grow_and_train",
    "grow_and_train_causal_lm",
    "grow_causal_lm",
    "grow_classifier",
    "operator_then_model",
    "save_adapter",
    "source_locations",
]

T = TypeVar("T")
ADAPTER_DIR = "ligo_adapter"
EVAL_RESULTS_FILE = "eval_results.json"
CARD_FILE = "README.md"
# The column Trainer reads labels from (fedgrow_hf.data.tokenize_text renames "label" to it).
LABEL_COLUMN = "labels"
# Trainer logs the loss about this many times per phase.
LOGS_PER_PHASE = 10


def __getattr__(name: str) -> Any:
    if name == "CLASSIFICATION_MODELS":  # the lookup is classification_model_class now
        warnings.warn("fedgrow_hf.recipe.CLASSIFICATION_MODELS is deprecated: use "
                      "fedgrow_hf.experiment.models.classification_model_class", DeprecationWarning, stacklevel=2)
        return {"vit": AutoModelForImageClassification}
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


@dataclass(frozen=True)
class TrainingSchedule:
    """Steps and learning rates of both phases, shared by every phase's ``TrainingArguments``.

    Defaults: a brief operator phase (LiGO trains the operator for a small part of the run) at a
    high rate, which its few parameters take; then 200 full-model steps (3,200 examples at batch 16)
    at 5e-5, BERT's usual fine-tuning rate: enough for every weight to adapt to the task, low enough
    to keep what the grown weights inherited from the pretrained source. ``bf16`` trains both phases
    in bfloat16 mixed precision (Trainer's ``bf16``: accelerate's autocast).
    """

    operator_steps: int = 20
    operator_learning_rate: float = 1e-3
    finetune_steps: int = 200
    finetune_learning_rate: float = 5e-5
    batch_size: int = 16
    seed: int = 0
    bf16: bool = False

    def __post_init__(self) -> None:
        # LiGO always trains its operator; 0 full-model steps stop after the operator phase.
        for name, least in (("operator_steps", 1), ("finetune_steps", 0)):
            if getattr(self, name) < least:
                raise ValueError(f"{name} must be >= {least}, got {getattr(self, name)}")
        for name in ("operator_learning_rate", "finetune_learning_rate"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be > 0, got {getattr(self, name)}")
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {self.batch_size}")

    @property
    def operator_phase(self) -> TrainingPhase:
        return self.operator_phase_of(CLASSIFICATION.operator_trains)

    def operator_phase_of(self, trained: str, figures: dict[str, float] | None = None) -> TrainingPhase:
        """The operator phase as a card states it: ``trained`` (the operator, and what else the task adds),
        with the ``figures`` measured after it."""
        return TrainingPhase(trained, self.operator_steps, self.operator_learning_rate, figures)

    @property
    def finetune_phase(self) -> TrainingPhase:
        return self.finetune_phase_with()

    def finetune_phase_with(self, figures: dict[str, float] | None = None) -> TrainingPhase:
        return TrainingPhase(
            "every weight of the merged grown model", self.finetune_steps, self.finetune_learning_rate, figures
        )


@dataclass(frozen=True)
class GrowthResult:
    """What :func:`grow_and_train` and :func:`grow_and_train_causal_lm` return.

    ``model`` is the fine-tuned plain transformers model (the LiGO ``PeftModel`` when
    ``finetune_steps`` is 0); ``metrics`` are its evaluation results and ``operator_metrics`` those
    of the grown model after the operator phase (the same when there is no full-model phase).
    """

    model: PreTrainedModel | PeftModel
    metrics: dict[str, float]
    operator_metrics: dict[str, float]


def class_names(train_dataset: datasets.Dataset, eval_dataset: datasets.Dataset) -> list[str]:
    """The class names of both splits' shared ``ClassLabel``; refuses what cannot train a classifier."""
    for name, dataset in (("train_dataset", train_dataset), ("eval_dataset", eval_dataset)):
        if len(dataset) == 0:
            raise ValueError(f"{name} holds no examples")
        if not isinstance(dataset.features.get(LABEL_COLUMN), datasets.ClassLabel):
            raise ValueError(
                f"{name} needs a {LABEL_COLUMN!r} column that is a datasets.ClassLabel "
                "(fedgrow_hf.data.align_class_labels makes one, tokenize_text renames 'label' to it)"
            )
    names = train_dataset.features[LABEL_COLUMN].names
    if eval_dataset.features[LABEL_COLUMN].names != names:
        raise ValueError(
            f"train and eval labels are encoded differently ({names} vs "
            f"{eval_dataset.features[LABEL_COLUMN].names}): align them with "
            "fedgrow_hf.data.align_class_labels"
        )
    present = sorted({int(label) for label in train_dataset[LABEL_COLUMN]})
    if len(present) < 2:
        raise ValueError(
            f"the training data has a single class ({names[present[0]]!r}): a classifier needs at least two"
        )
    return names


def grow_and_train(
    source: str | PreTrainedModel | list[str | PreTrainedModel],
    target_config: PretrainedConfig,
    train_dataset: datasets.Dataset,
    eval_dataset: datasets.Dataset,
    *,
    output_dir: str | os.PathLike,
    schedule: TrainingSchedule | None = None,
    processor: Any = None,
    intermediate_config: PretrainedConfig | dict[str, int] | None = None,
    data_info: DatasetInfo | None = None,
    **ligo_kwargs: Any,
) -> GrowthResult:
    """Grow ``source`` into ``target_config``'s classifier, train the operator, then the whole model; evaluate, save.

    ``train_dataset``/``eval_dataset`` are preprocessed rows (``input_ids``/``pixel_values`` ...) with a
    ``labels`` ``ClassLabel`` column shared by both; its names become the target's ``id2label``
    (``target_config`` itself is not changed). ``processor`` (a tokenizer or image processor) is saved
    with the final model. ``data_info`` names the data and its splits in the cards; ``ligo_kwargs`` go to
    :class:`~fedgrow_hf.LiGOConfig` (``width_structure``, ``depth_init`` ...).

    Under ``accelerate launch`` (several processes, DDP) every process trains and returns the same
    model, and only the main process writes to ``output_dir``.
    """
    schedule = schedule or TrainingSchedule()
    config = _with_class_names(target_config, class_names(train_dataset, eval_dataset))
    model = grow_classifier(
        source, config, intermediate_config=intermediate_config, seed=schedule.seed, **ligo_kwargs
    )
    return _train_both_phases(model, CLASSIFICATION, train_dataset, eval_dataset, output_dir=output_dir,
                              schedule=schedule, processor=processor, data_info=data_info)


def grow_and_train_causal_lm(
    source: str | PreTrainedModel | list[str | PreTrainedModel],
    target_config: PretrainedConfig,
    train_dataset: datasets.Dataset,
    eval_dataset: datasets.Dataset,
    *,
    output_dir: str | os.PathLike,
    tokenizer: PreTrainedTokenizerBase,
    schedule: TrainingSchedule | None = None,
    intermediate_config: PretrainedConfig | dict[str, int] | None = None,
    data_info: DatasetInfo | None = None,
    **ligo_kwargs: Any,
) -> GrowthResult:
    """Grow the decoder ``source`` (``LlamaForCausalLM``, ``GPT2LMHeadModel`` ...) into ``target_config``,
    train the operator, then the whole merged model on the causal-LM loss; evaluate, save.

    ``train_dataset``/``eval_dataset`` are blocks of token ids with their ``labels``
    (:func:`fedgrow_hf.data.pack_causal_lm`, :func:`fedgrow_hf.experiment.recipe_data.causal_lm_datasets`)
    made by ``tokenizer``, which is saved with the final model so that it generates text as it is. After
    each phase the model is scored by :func:`~fedgrow_hf.experiment.tasks.causal_lm_figures` (cross-entropy, perplexity, next-token
    accuracy). The grown model is PEFT's causal-LM wrapper, so it can ``generate`` before it is merged too;
    the result's ``model`` after a full-model phase is the plain ``*ForCausalLM``.
    """
    schedule = schedule or TrainingSchedule()
    if len(tokenizer) > target_config.vocab_size:
        raise ValueError(f"the tokenizer has {len(tokenizer):,} tokens, more than the target's vocab_size "
                         f"{target_config.vocab_size:,}: its ids would index past the embedding table")
    model = grow_causal_lm(source, target_config, intermediate_config=intermediate_config, seed=schedule.seed,
                           **ligo_kwargs)
    return _train_both_phases(model, CAUSAL_LM, train_dataset, eval_dataset, output_dir=output_dir,
                              schedule=schedule, processor=tokenizer, data_info=data_info)


def _train_both_phases(
    model: PeftModel,
    task: Task,
    train_dataset: datasets.Dataset,
    eval_dataset: datasets.Dataset,
    *,
    output_dir: str | os.PathLike,
    schedule: TrainingSchedule,
    processor: Any,
    data_info: DatasetInfo | None,
) -> GrowthResult:
    """LiGO's two phases on the grown ``model`` with ``Trainer`` as ``task`` says, each evaluated; the
    operator-phase adapter, the final model, their results and cards written (main process only)."""
    data_info = data_info or DatasetInfo()
    model.print_trainable_parameters()
    sources = source_locations(model)
    operator_trains = operator_phase_trains(model, task)
    output = Path(output_dir)
    finetune = schedule.finetune_steps > 0
    adapter_dir = output / ADAPTER_DIR if finetune else output

    def facts(*phases: TrainingPhase) -> TrainingFacts:
        return TrainingFacts(
            phases,
            schedule.batch_size,
            schedule.seed,
            len(train_dataset),
            len(eval_dataset),
            data_info.train_split,
            task.rows(train_dataset),
        )

    # Trainer needs a directory, but saves no checkpoint (save_strategy="no"): a scratch one will do.
    with tempfile.TemporaryDirectory(prefix="fedgrow-trainer-") as scratch:

        def train_and_evaluate(
            trained: PeftModel | PreTrainedModel, phase: TrainingPhase
        ) -> dict[str, float]:
            trainer = Trainer(
                model=trained,
                args=_training_arguments(scratch, schedule, phase),
                train_dataset=train_dataset,
                eval_dataset=eval_dataset,
                **task.trainer_options(),
            )
            trainer.train()
            return task.figures(trainer.evaluate())

        def train_operator(operator_model: PeftModel) -> dict[str, float]:
            metrics = train_and_evaluate(operator_model, schedule.operator_phase_of(operator_trains))
            if PartialState().is_main_process:  # Trainer has set up the processes by now
                save_adapter(operator_model, adapter_dir, metrics=metrics, data_info=data_info,
                             training=facts(schedule.operator_phase_of(operator_trains, metrics)))
            return metrics

        def train_merged(merged: PreTrainedModel) -> dict[str, float]:
            return train_and_evaluate(merged, schedule.finetune_phase)

        final, operator_metrics, metrics = operator_then_model(
            model, train_operator, train_merged if finetune else None
        )
        result = GrowthResult(final, operator_metrics if metrics is None else metrics, operator_metrics)
        main_process = PartialState().is_main_process
    if not main_process:
        return result
    if processor is not None:
        processor.save_pretrained(output)
    if finetune:
        result.model.save_pretrained(output)
        _write_results(output, result.metrics)
        card = build_model_card(
            adapter_dir,
            repo_id=output.resolve().name,
            merged=True,
            metrics=result.metrics,
            training=facts(schedule.operator_phase_of(operator_trains, operator_metrics),
                           schedule.finetune_phase_with(result.metrics)),
            sources=sources,
            **data_info.card_fields(),
        )
        card.save(output / CARD_FILE)
    return result


def operator_then_model(
    model: PeftModel,
    train_operator: Callable[[PeftModel], T],
    train_model: Callable[[PreTrainedModel], T] | None,
    *,
    merge: bool = False,
) -> tuple[PeftModel | PreTrainedModel, T, T | None]:
    """LiGO's two phases on a grown model: ``train_operator`` trains its operator (and new head); the LiGO
    model is then merged (``merge_and_unload``) into a plain transformers model, every weight of which
    ``train_model`` trains. Without ``train_model`` it stops after the operator phase, and merges only with
    ``merge``. Returns the final model and what each phase's training returned (``None``: no second phase).

    :func:`grow_and_train` is this recipe with ``Trainer`` and a model card; the comparison
    (``fedgrow_hf.reproduce``) calls it with its own step counts and learning curves.
    """
    operator_result = train_operator(model)
    if train_model is None:
        return (model.merge_and_unload() if merge else model), operator_result, None
    merged = model.merge_and_unload()
    merged.requires_grad_(True)  # this phase trains every weight, whatever the tuner left frozen
    return merged, operator_result, train_model(merged)


def _with_class_names(config: PretrainedConfig, names: list[str]) -> PretrainedConfig:
    """A copy of ``config`` whose labels are ``names`` (ids 0..K-1): the saved model names its classes."""
    config = copy.deepcopy(config)
    config.num_labels = len(names)
    config.id2label = dict(enumerate(names))
    config.label2id = {name: index for index, name in enumerate(names)}
    return config


def save_adapter(
    model: PeftModel,
    directory: str | os.PathLike,
    *,
    metrics: dict[str, float] | None = None,
    data_info: DatasetInfo | None = None,
    training: TrainingFacts | None = None,
) -> None:
    """``save_pretrained`` the LiGO adapter, then replace PEFT's empty default card by the project's.

    With ``metrics`` they are also written to ``eval_results.json`` beside the adapter.
    """
    directory = Path(directory)
    model.save_pretrained(directory)
    if metrics:
        _write_results(directory, metrics)
    card = build_model_card(
        directory,
        repo_id=directory.resolve().name,
        merged=False,
        metrics=metrics,
        training=training,
        sources=source_locations(model),
        **(data_info or DatasetInfo()).card_fields(),
    )
    card.save(directory / CARD_FILE)


def source_locations(model: PeftModel) -> list[str]:
    """Where the LiGO model's sources were loaded from: its card reads their shapes there."""
    return model.peft_config[model.active_adapter].source_paths


def operator_phase_trains(model: PeftModel, task: Task) -> str:
    """What the LiGO model's operator phase trains, as its cards state it (its heads grown or new)."""
    return task.operator_phase_trains(model.peft_config[model.active_adapter].grown_heads)


def _write_results(directory: Path, metrics: dict[str, float]) -> None:
    (directory / EVAL_RESULTS_FILE).write_text(json.dumps(metrics, indent=2) + "\n")


def _training_arguments(scratch: str, schedule: TrainingSchedule, phase: TrainingPhase) -> TrainingArguments:
    return TrainingArguments(
        output_dir=scratch,
        max_steps=phase.steps,
        per_device_train_batch_size=schedule.batch_size,
        per_device_eval_batch_size=schedule.batch_size,
        learning_rate=phase.learning_rate,
        logging_steps=max(1, phase.steps // LOGS_PER_PHASE),
        label_names=[LABEL_COLUMN],
        save_strategy="no",
        report_to=[],
        seed=schedule.seed,
        bf16=schedule.bf16,
    )
