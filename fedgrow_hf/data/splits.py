"""Train and evaluation splits of one classification task: one label encoding, and a held-out split.

Why one encoding: every split is loaded on its own, and a loader numbers string labels by the
classes *that split* holds (``class_encode_column`` sorts them), so an evaluation split that lacks a
class would number the others differently from the training split. :func:`align_class_labels`
re-encodes all splits with one ``ClassLabel`` whose names become the model's ``id2label``.

Why a held-out split: a model must be evaluated on examples it was not trained on. When the data has
no evaluation split (a single file), :func:`holdout_split` sets a seeded, stratified part aside.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence

import datasets
import numpy as np

# Names of evaluation splits, in the order they are preferred when a dataset has several.
EVAL_SPLIT_NAMES = ("test", "validation", "dev")


def pick_eval_split(available: Sequence[str], train_split: str) -> str | None:
    """The first of :data:`EVAL_SPLIT_NAMES` among ``available`` that is not the training split."""
    return next((name for name in EVAL_SPLIT_NAMES if name in available and name != train_split), None)


def _name_of(feature: datasets.ClassLabel | datasets.Value) -> Callable[[int | str], str]:
    """How a stored label value becomes a class name: a ClassLabel's own name, else the value as text."""
    return feature.int2str if isinstance(feature, datasets.ClassLabel) else str


def _sorted_names(names: set[str]) -> list[str]:
    """Integer names in numeric order ("2" before "10"), any other names alphabetically."""
    if all(name.lstrip("-").isdigit() for name in names):
        return sorted(names, key=int)
    return sorted(names)


def _check_labels(name: str, dataset: datasets.Dataset, column: str) -> None:
    if column not in dataset.column_names:
        raise KeyError(f"split {name!r} has no {column!r} column; columns: {', '.join(dataset.column_names)}")
    feature = dataset.features[column]
    if isinstance(feature, datasets.ClassLabel) or feature.dtype.startswith("int"):
        if len(dataset) and min(dataset[column]) < 0:  # datasets' convention for a hidden label
            raise ValueError(f"split {name!r} has examples without a label ({column} = -1)")
    elif feature.dtype not in ("string", "large_string"):
        raise ValueError(f"split {name!r}: labels must be integers or strings, not {feature.dtype}")


def align_class_labels(
    splits: Mapping[str, datasets.Dataset], column: str = "label"
) -> dict[str, datasets.Dataset]:
    """Encode ``column`` of every split as class ids 0..K-1 of one shared ``ClassLabel``.

    Splits that already share one ``ClassLabel`` keep it (and its order of names). Otherwise the names
    are the union of every split's classes -- a ``ClassLabel``'s names, or integer/string label values
    as text -- sorted (integers numerically), so integer labels 0..K-1 keep their ids.
    """
    for name, dataset in splits.items():
        _check_labels(name, dataset, column)
    features = [dataset.features[column] for dataset in splits.values()]
    first = features[0]
    if isinstance(first, datasets.ClassLabel) and all(feature == first for feature in features):
        return dict(splits)
    names: set[str] = set()
    for dataset, feature in zip(splits.values(), features):
        name_of = _name_of(feature)
        names.update(
            feature.names if isinstance(feature, datasets.ClassLabel) else map(name_of, dataset[column])
        )
    class_label = datasets.ClassLabel(names=_sorted_names(names))
    return {
        name: _encode(dataset, column, _name_of(dataset.features[column]), class_label)
        for name, dataset in splits.items()
    }


def _encode(
    dataset: datasets.Dataset,
    column: str,
    name_of: Callable[[int | str], str],
    class_label: datasets.ClassLabel,
) -> datasets.Dataset:
    features = dataset.features.copy()
    features[column] = class_label

    def encode(batch: dict[str, list]) -> dict[str, list[int]]:
        return {column: [class_label.str2int(name_of(value)) for value in batch[column]]}

    return dataset.map(encode, batched=True, features=features)


def holdout_split(
    dataset: datasets.Dataset, fraction: float, seed: int, column: str = "label"
) -> tuple[datasets.Dataset, datasets.Dataset]:
    """Split ``dataset`` into (train, held out) with ``ceil(fraction * n)`` held-out examples, seeded.

    Stratified by the ``ClassLabel`` ``column`` (each class keeps its share in both parts) whenever
    that is possible: every class has at least 2 examples and both parts can hold one of each. Rows
    without that column (a text corpus's documents) are split at random.
    """
    if not 0 < fraction < 1:
        raise ValueError(f"the held-out fraction must be between 0 and 1 (exclusive), got {fraction}")
    size = len(dataset)
    if size < 2:
        raise ValueError(f"cannot hold out part of {size} example(s): need at least 2")
    held_out = min(max(1, math.ceil(fraction * size)), size - 1)
    stratify = isinstance(dataset.features.get(column), datasets.ClassLabel) and _stratifiable(
        dataset[column], min(held_out, size - held_out)
    )
    parts = dataset.train_test_split(
        test_size=held_out, seed=seed, stratify_by_column=column if stratify else None
    )
    return parts["train"], parts["test"]


def _stratifiable(labels: Sequence[int], smaller_part: int) -> bool:
    """Whether a stratified split exists: every class twice or more, and room for each in both parts."""
    counts = np.unique(np.asarray(labels), return_counts=True)[1]
    return counts.min() >= 2 and smaller_part >= counts.size
