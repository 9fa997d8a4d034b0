"""The recipe's data (``fedgrow grow``, :func:`fedgrow_hf.recipe.grow_and_train`): training and evaluation
rows with one label encoding, an evaluation split never trained on, and how the model cards name the data."""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import NamedTuple

import datasets
from transformers import AutoTokenizer, PretrainedConfig, PreTrainedTokenizerBase

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
from ..data.common import parse_hub_name, source_name
from .models import is_image_model

# Held out of the training data when the data has no evaluation split: the usual 80/20 cut.
EVAL_FRACTION = 0.2
UNNAMED_DATA = "unnamed data"


@dataclass(frozen=True)
class DatasetInfo:
    """How the model cards name the data: a Hub id (for the model-index) and/or a name, and the splits."""

    dataset_id: str | None = None
    dataset_name: str | None = None
    train_split: str | None = None
    eval_split: str | None = None

    def card_fields(self) -> dict[str, str | None]:
        """``build_model_card``'s dataset arguments; data named by neither id nor name is "unnamed"."""
        return {
            "dataset_id": self.dataset_id,
            "dataset_name": self.dataset_name or self.dataset_id or UNNAMED_DATA,
            "dataset_split": self.eval_split,
        }


class RecipeData(NamedTuple):
    """What :func:`recipe_datasets` returns."""

    train: datasets.Dataset
    evaluation: datasets.Dataset
    data_info: DatasetInfo
    tokenizer: PreTrainedTokenizerBase | None


def recipe_datasets(
    data: str,
    source_config: PretrainedConfig,
    source_path: str,
    *,
    split: str = "train",
    eval_split: str | None = None,
    eval_fraction: float = EVAL_FRACTION,
    text_column: str = "sentence",
    label_column: str = "label",
    limit: int | None = None,
    eval_limit: int | None = None,
    max_length: int = 64,
    seed: int = 0,
    record_local_paths: bool = False,
) -> RecipeData:
    """Training and evaluation rows of ``data`` for a growth of ``source_config``'s family, with one label
    encoding, how the cards name them, and the tokenizer (of ``source_path``; none for images).

    The evaluation split is ``eval_split``, else the first of test/validation/dev that ``data`` has, else
    a seeded ``eval_fraction`` of the training split held out: never a training example. Local paths are
    named in the cards by their last component unless ``record_local_paths``.
    """
    images = is_image_model(source_config)
    if images:
        load = partial(load_image_classification, data)
        available = image_split_names(data)
    else:
        load = partial(load_text_classification, data, text_column=text_column, label_column=label_column)
        available = text_split_names(data)
    if eval_split is not None and eval_split not in available:
        raise ValueError(
            f"evaluation split {eval_split}: {data} has no such split (it has: {', '.join(available) or 'none'})"
        )
    if eval_split == split:
        raise ValueError(f"the evaluation split must differ from the training split ({split}): "
                         "never evaluate on training data")
    chosen = eval_split or pick_eval_split(available, split)
    train = load(split, limit=limit, seed=seed)
    if chosen is None:
        (train,) = align_class_labels({split: train}).values()
        train, evaluation = holdout_split(train, eval_fraction, seed)
        split_name = f"{eval_fraction:.0%} of the training examples, held out"
    else:
        evaluation = load(chosen, limit=eval_limit, seed=seed)
        aligned = align_class_labels({split: train, chosen: evaluation})
        train, evaluation = aligned[split], aligned[chosen]
        split_name = chosen
    local = Path(data).expanduser().exists() or data == SKLEARN_DIGITS
    data_info = DatasetInfo(
        dataset_id=None if local else parse_hub_name(data)[0],
        dataset_name=data if record_local_paths or not local else source_name(data),
        train_split=split if split in available else None,  # a single file has no splits
        eval_split=split_name,
    )
    if images:
        train, evaluation = (rows.rename_column("label", "labels") for rows in (train, evaluation))
        return RecipeData(train, evaluation, data_info, None)
    tokenizer = AutoTokenizer.from_pretrained(source_path)
    return RecipeData(
        tokenize_text(train, tokenizer, max_length), tokenize_text(evaluation, tokenizer, max_length), data_info, tokenizer
    )
