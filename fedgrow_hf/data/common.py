"""Pieces shared by the text and image loaders: Hub names with configs, split names, deterministic subsets."""

from __future__ import annotations

from pathlib import Path

import datasets
from datasets.fingerprint import generate_random_fingerprint

# Canonical Hub datasets written without an org whose "<name>/<config>" form users know from papers.
LEGACY_CONFIG_DATASETS = ("glue", "super_glue")


def parse_hub_name(source: str) -> tuple[str, str | None]:
    """``"name:config"`` -> (name, config); ``"glue/sst2"`` -> ("glue", "sst2"); else (source, None)."""
    if ":" in source:
        name, config = source.split(":", 1)
        return name, config or None
    head, _, tail = source.partition("/")
    if head in LEGACY_CONFIG_DATASETS and tail:
        return head, tail
    return source, None


def source_name(path: str) -> str:
    """How something saved (an adapter, a model card) names a model or data source: a local path by its
    last component, so that it does not reveal the file system, a Hub id as it is."""
    local = Path(path).expanduser()
    return local.resolve().name if local.is_absolute() or local.exists() else path


def hub_dataset(source: str, split: str) -> datasets.Dataset:
    """``datasets.load_dataset`` for a Hub id, with an error that says a local path was not found either."""
    name, config = parse_hub_name(source)
    try:
        return datasets.load_dataset(name, config, split=split)
    except (FileNotFoundError, ConnectionError) as error:
        raise _not_found(source, f"load_dataset({name!r}, {config!r}, split={split!r})", error) from error


def hub_split_names(source: str) -> list[str]:
    """The split names of a Hub dataset (answered from the local cache when offline)."""
    name, config = parse_hub_name(source)
    try:
        return list(datasets.get_dataset_split_names(name, config))
    except (FileNotFoundError, ConnectionError) as error:
        raise _not_found(source, f"get_dataset_split_names({name!r}, {config!r})", error) from error


def _not_found(source: str, call: str, error: Exception) -> FileNotFoundError:
    return FileNotFoundError(
        f"{source!r} is neither a local file/directory nor a loadable Hub dataset ({call} failed: {error})"
    )


def tokenizing_fingerprint(dataset: datasets.Dataset) -> str | None:
    """The ``new_fingerprint`` for a ``map`` whose function holds a tokenizer: a random one for a dataset in
    memory, None (``datasets`` hashes the function) for one backed by cache files.

    ``datasets`` names a map's result by hashing its function, and a tokenizer hashes with its whole vocabulary:
    0.36 s a call for MiniLM's, 17% of a tiny federation's time. The name only finds cache files, and a dataset
    in memory has none: a random name (what ``datasets`` gives every result with caching off) changes nothing.
    A dataset read from the Hub's cache keeps the hashed name, so its tokenised copy is still found next time.
    """
    return None if dataset.cache_files else generate_random_fingerprint()


def subsample(dataset: datasets.Dataset, limit: int | None, seed: int) -> datasets.Dataset:
    """A seeded random subset of at most ``limit`` rows (all rows, reshuffled, if there are fewer)."""
    if limit is None:
        return dataset
    if limit < 1:
        raise ValueError(f"limit must be a positive number of rows, got {limit}")
    shuffled = dataset.shuffle(seed=seed)
    return shuffled.select(range(min(limit, len(shuffled)))).flatten_indices()


class LabelError(ValueError):
    """A split holds labels that are not class ids of the model; the message names the first and the count."""


def check_label_ids(labels: list, num_labels: int, where: str) -> None:
    """Refuse ``labels`` unless every one is an integer class id in ``[0, num_labels)``.

    Checked when the data is loaded, before a run writes anything: otherwise a label of 8969 (or -1, or 0.5)
    passes loading and fails mid-training inside the loss (``Target 8969 is out of bounds``)."""
    bad = [(row, label) for row, label in enumerate(labels) if not _is_class_id(label, num_labels)]
    if bad:
        row, label = bad[0]
        raise LabelError(f"{where}: label {label!r} (row {row}) is not a class id in [0, {num_labels}) "
                         f"(num_labels = {num_labels}); {len(bad)} of {len(labels)} rows have such labels")
    floats = [(row, label) for row, label in enumerate(labels) if not isinstance(label, int)]
    if floats:
        row, label = floats[0]
        raise LabelError(f"{where}: labels are stored as numbers with a fraction (row {row}: {label!r}): class ids "
                         "must be integers")


def _is_class_id(label: object, num_labels: int) -> bool:
    """An integer (or integral float, as a column holding one fraction stores every label) in range."""
    if isinstance(label, bool) or not isinstance(label, int | float):
        return False
    return float(label).is_integer() and 0 <= label < num_labels
