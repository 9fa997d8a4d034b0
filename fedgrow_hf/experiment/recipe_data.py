"""The recipe's data (``fedgrow grow``, :func:`fedgrow_hf.recipe.grow_and_train` and
:func:`~fedgrow_hf.recipe.grow_and_train_causal_lm`): a classifier's training and evaluation rows with one
label encoding, or a decoder's blocks of text; an evaluation split never trained on; and how the model
cards name the data."""

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
    corpus_split_names,
    holdout_split,
    image_split_names,
    load_image_classification,
    load_text_classification,
    load_text_corpus,
    pack_causal_lm,
    pick_eval_split,
    text_split_names,
    tokenize_text,
)
from ..data.common import parse_hub_name, source_name
from ..data.corpus import TEXT_COLUMN
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
    chosen = _evaluation_split(data, available, split, eval_split)
    train = load(split, limit=limit, seed=seed)
    if chosen is None:
        (train,) = align_class_labels({split: train}).values()
        train, evaluation = holdout_split(train, eval_fraction, seed)
    else:
        evaluation = load(chosen, limit=eval_limit, seed=seed)
        aligned = align_class_labels({split: train, chosen: evaluation})
        train, evaluation = aligned[split], aligned[chosen]
    data_info = _data_info(data, available, split, chosen, eval_fraction, "examples", record_local_paths)
    if images:
        train, evaluation = (rows.rename_column("label", "labels") for rows in (train, evaluation))
        return RecipeData(train, evaluation, data_info, None)
    tokenizer = AutoTokenizer.from_pretrained(source_path)
    return RecipeData(
        tokenize_text(train, tokenizer, max_length), tokenize_text(evaluation, tokenizer, max_length), data_info, tokenizer
    )


def causal_lm_datasets(
    data: str,
    tokenizer_path: str,
    *,
    split: str = "train",
    eval_split: str | None = None,
    eval_fraction: float = EVAL_FRACTION,
    text_column: str = TEXT_COLUMN,
    limit: int | None = None,
    eval_limit: int | None = None,
    block_size: int = 64,
    seed: int = 0,
    record_local_paths: bool = False,
) -> RecipeData:
    """Training and evaluation blocks of the text corpus ``data`` (:func:`fedgrow_hf.data.load_text_corpus`:
    a text file, a folder of text files or of splits, a table, a Hub dataset id) for a decoder, packed into
    ``block_size``-token blocks (:func:`fedgrow_hf.data.pack_causal_lm`) by the tokenizer at ``tokenizer_path``.

    The evaluation documents are ``eval_split``, else the first of test/validation/dev that ``data`` has,
    else a seeded ``eval_fraction`` of the training documents held out (before packing, so no block
    straddles both). ``limit`` and ``eval_limit`` count documents.
    """
    available = corpus_split_names(data)
    chosen = _evaluation_split(data, available, split, eval_split)
    load = partial(load_text_corpus, data, text_column=text_column, seed=seed)
    train = load(split, limit=limit)
    if chosen is None:
        train, evaluation = holdout_split(train, eval_fraction, seed)
    else:
        evaluation = load(chosen, limit=eval_limit)
    data_info = _data_info(data, available, split, chosen, eval_fraction, "documents", record_local_paths)
    tokenizer = AutoTokenizer.from_pretrained(tokenizer_path)
    return RecipeData(pack_causal_lm(train, tokenizer, block_size), pack_causal_lm(evaluation, tokenizer, block_size),
                      data_info, tokenizer)


def _evaluation_split(data: str, available: list[str], split: str, eval_split: str | None) -> str | None:
    """The split to evaluate on: ``eval_split`` (which ``data`` must have, and not the training split), else the
    first of test/validation/dev it has; None: hold part of the training split out."""
    if eval_split is not None and eval_split not in available:
        raise ValueError(
            f"evaluation split {eval_split}: {data} has no such split (it has: {', '.join(available) or 'none'})"
        )
    if eval_split == split:
        raise ValueError(f"the evaluation split must differ from the training split ({split}): "
                         "never evaluate on training data")
    return eval_split or pick_eval_split(available, split)


def _data_info(data: str, available: list[str], split: str, chosen: str | None, eval_fraction: float, rows: str,
               record_local_paths: bool) -> DatasetInfo:
    """How the cards name ``data`` and its splits (a held-out part of the training ``rows`` where ``chosen`` is None)."""
    local = Path(data).expanduser().exists() or data == SKLEARN_DIGITS
    return DatasetInfo(
        dataset_id=None if local else parse_hub_name(data)[0],
        dataset_name=data if record_local_paths or not local else source_name(data),
        train_split=split if split in available else None,  # a single file has no splits
        eval_split=chosen or f"{eval_fraction:.0%} of the training {rows}, held out",
    )
