"""Text classification datasets from local files or the Hub, normalised to ``text``/``label`` columns.

Why one loader for both: the CLI, the federated simulation and the examples take a *data source*
string, so a user can point at a local TSV (e.g. GLUE's SST-2 layout, ``sentence<TAB>label``) or at a
Hub dataset without code changes. Local files are read with pandas (no ``datasets`` cache written).
"""

from __future__ import annotations

import csv
from pathlib import Path

import datasets

from .common import hub_dataset, hub_split_names, subsample, tokenizing_fingerprint

LOCAL_SUFFIXES = (".tsv", ".csv", ".parquet", ".json", ".jsonl")


def read_table(path: Path) -> datasets.Dataset:
    """One local file as a Dataset; TSVs are read without quote handling, like GLUE's own files."""
    import pandas as pd

    suffix = path.suffix.lower()
    if path.stat().st_size == 0:  # pandas would say "No columns to parse from file"
        raise ValueError(f"{path} is empty: it holds no examples")
    if suffix == ".tsv":
        frame = pd.read_csv(path, sep="\t", quoting=csv.QUOTE_NONE, keep_default_na=False)
    elif suffix == ".csv":
        frame = pd.read_csv(path, keep_default_na=False)
    elif suffix == ".parquet":
        frame = pd.read_parquet(path)
    elif suffix in (".json", ".jsonl"):
        frame = pd.read_json(path, lines=suffix == ".jsonl" or _is_json_lines(path))
    else:
        raise ValueError(f"unsupported data file {path}: expected one of {', '.join(LOCAL_SUFFIXES)}")
    if frame.empty:
        raise ValueError(f"{path} holds no examples (only a header)")
    return datasets.Dataset.from_pandas(frame, preserve_index=False)


def _is_json_lines(path: Path) -> bool:
    with path.open(encoding="utf-8") as handle:
        return not handle.read(1).lstrip().startswith("[")


def text_split_names(source: str) -> list[str]:
    """The splits ``load_text_classification(source, split)`` can load: none for a single file (it
    is one split), the ``<split>.<ext>`` files of a directory, or a Hub dataset's splits."""
    path = Path(source).expanduser()
    if path.is_file():
        return []
    if path.is_dir():
        return sorted({p.stem for p in path.iterdir() if p.is_file() and p.suffix.lower() in LOCAL_SUFFIXES})
    return hub_split_names(source)


def split_file(directory: Path, split: str) -> Path:
    for suffix in LOCAL_SUFFIXES:
        candidate = directory / f"{split}{suffix}"
        if candidate.is_file():
            return candidate
    found = sorted(p.name for p in directory.iterdir() if p.suffix.lower() in LOCAL_SUFFIXES)
    raise FileNotFoundError(
        f"no file for split {split!r} in {directory} (looked for {split}{{{','.join(LOCAL_SUFFIXES)}}}); "
        f"data files there: {', '.join(found) or 'none'}"
    )


def _normalise(
    dataset: datasets.Dataset, text_column: str, label_column: str, source: str
) -> datasets.Dataset:
    """Keep only ``text`` and ``label``; string labels become a ClassLabel (sorted names)."""
    missing = [c for c in (text_column, label_column) if c not in dataset.column_names]
    if missing:
        raise KeyError(
            f"{source}: column(s) {', '.join(map(repr, missing))} not found; available columns: "
            f"{', '.join(dataset.column_names)} (set text_column=/label_column=)"
        )
    dataset = dataset.select_columns([text_column, label_column])
    if text_column != "text":
        dataset = dataset.rename_column(text_column, "text")
    if label_column != "label":
        dataset = dataset.rename_column(label_column, "label")
    if dataset.features["label"].dtype in ("string", "large_string"):
        dataset = dataset.class_encode_column("label")
    return dataset


def load_text_classification(
    source: str,
    split: str = "train",
    *,
    text_column: str = "sentence",
    label_column: str = "label",
    limit: int | None = None,
    seed: int = 0,
) -> datasets.Dataset:
    """Load a text classification split with columns ``text`` (str) and ``label`` (int or ClassLabel).

    ``source`` is, in order of precedence:

    * a local file (``.tsv``/``.csv``/``.parquet``/``.json``/``.jsonl``); ``split`` is then ignored;
    * a local directory holding ``<split>.<ext>`` files (e.g. an SST-2 folder with ``train.tsv``,
      ``dev.tsv``, ``test.tsv``);
    * a Hub dataset id, loaded with ``datasets.load_dataset``; a config is given as ``"name:config"``
      (e.g. ``"nyu-mll/glue:sst2"``) or, for GLUE, as ``"glue/sst2"``.

    ``limit`` keeps a deterministic random subset of that many rows (shuffled with ``seed``).
    """
    path = Path(source).expanduser()
    if path.is_file():
        dataset = read_table(path)
    elif path.is_dir():
        dataset = read_table(split_file(path, split))
    else:
        dataset = hub_dataset(source, split)
    return subsample(_normalise(dataset, text_column, label_column, source), limit, seed)


def tokenize_text(dataset: datasets.Dataset, tokenizer, max_length: int) -> datasets.Dataset:
    """Tokenise ``text`` to fixed-length ``input_ids``/``attention_mask``(/``token_type_ids``) + ``labels``.

    Padding to ``max_length`` (rather than dynamic padding) lets ``transformers.default_data_collator``
    batch the torch-formatted rows directly, which is what ``Trainer`` uses without a tokenizer collator.
    """
    if "text" not in dataset.column_names:
        raise KeyError(f"tokenize_text needs a 'text' column; got {', '.join(dataset.column_names)}")

    def encode(batch):
        return tokenizer(batch["text"], truncation=True, max_length=max_length, padding="max_length")

    encoded = dataset.map(encode, batched=True, remove_columns=["text"], new_fingerprint=tokenizing_fingerprint(dataset))
    if "label" in encoded.column_names:
        encoded = encoded.rename_column("label", "labels")
    encoded.set_format("torch")
    return encoded
