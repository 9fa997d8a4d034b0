"""Text corpora for causal language modelling: documents in, fixed-length blocks of tokens out.

A decoder learns from running text, not from labelled examples, so a corpus is a ``text`` column of
*documents* (a line of a text file, a row of a table, a Hub dataset's row) and nothing else. Where the
documents come from is the same choice as for classification data, plus plain text files:

* a plain text file (``.txt``, ``.text``, ``.md``): each non-empty line is a document;
* a table (``.tsv``/``.csv``/``.parquet``/``.json``/``.jsonl``, read like :mod:`.text` reads them): the
  ``text_column`` of every row (the SST-2 and AG News folders' ``sentence``);
* a folder of splits (one of its files is named ``train``, ``test``, ``validation`` or ``dev``, as in the
  SST-2 and AG News folders): its ``<split>.<ext>`` file; any other folder: every plain text file under
  it, in path order, as one corpus;
* a Hub dataset id: ``text_column`` of its ``split``.

:func:`pack_causal_lm` then does what ``transformers``' ``run_clm.py`` does: tokenise every document,
join them with the end-of-text token between documents, and cut the stream into blocks of
``block_size`` tokens whose labels are their own ids (the model shifts them). No token is padding, so
every token of a block is trained on and scored, and a batch is a plain stack of blocks.
"""

from __future__ import annotations

from itertools import chain
from pathlib import Path

import datasets
from transformers import PreTrainedTokenizerBase

from .common import hub_dataset, hub_split_names, subsample, tokenizing_fingerprint
from .splits import EVAL_SPLIT_NAMES
from .text import LOCAL_SUFFIXES, read_table, split_file

TEXT_FILE_SUFFIXES = (".txt", ".text", ".md")
# The column every corpus is normalised to, and the one a Hub dataset's text is read from by default.
TEXT_COLUMN = "text"
LABEL_COLUMN = "labels"


def corpus_split_names(source: str) -> list[str]:
    """The splits :func:`load_text_corpus` can load from ``source``: none for a file or a folder of plain
    text files (each is one corpus), the ``<split>.<ext>`` files of a folder of splits, a Hub dataset's splits."""
    path = Path(source).expanduser()
    if path.is_file():
        return []
    if path.is_dir():
        suffixes = (*LOCAL_SUFFIXES, *TEXT_FILE_SUFFIXES)
        stems = {p.stem for p in path.iterdir() if p.is_file() and p.suffix.lower() in suffixes}
        return sorted(stems) if stems & {"train", *EVAL_SPLIT_NAMES} else []
    return hub_split_names(source)


def load_text_corpus(
    source: str, split: str = "train", *, text_column: str = TEXT_COLUMN, limit: int | None = None, seed: int = 0
) -> datasets.Dataset:
    """The documents of ``split`` of ``source`` (see the module doc) as one ``text`` column, empty ones
    dropped; ``limit`` keeps a seeded random subset of that many documents."""
    path = Path(source).expanduser()
    if path.is_dir() and corpus_split_names(source):
        path = _split_path(path, split)
    if path.is_dir():
        documents = datasets.Dataset.from_dict({TEXT_COLUMN: _folder_lines(path)})
    elif path.is_file() and path.suffix.lower() in TEXT_FILE_SUFFIXES:
        documents = datasets.Dataset.from_dict({TEXT_COLUMN: _lines(path)})
    elif path.is_file():
        documents = _text_of(read_table(path), text_column, source)
    else:
        documents = _text_of(hub_dataset(source, split), text_column, source)
    documents = documents.filter(lambda row: bool(row[TEXT_COLUMN].strip()))
    if len(documents) == 0:
        raise ValueError(f"{source}: no text (every document is empty)")
    return subsample(documents, limit, seed)


def _split_path(directory: Path, split: str) -> Path:
    """A folder's file of ``split``: a plain text file or a table (``<split>.<ext>``)."""
    for suffix in TEXT_FILE_SUFFIXES:
        if (directory / f"{split}{suffix}").is_file():
            return directory / f"{split}{suffix}"
    return split_file(directory, split)


def _lines(path: Path) -> list[str]:
    return path.read_text(encoding="utf-8").splitlines()


def _folder_lines(directory: Path) -> list[str]:
    files = sorted(p for p in directory.rglob("*") if p.is_file() and p.suffix.lower() in TEXT_FILE_SUFFIXES)
    if not files:
        raise FileNotFoundError(
            f"{directory} holds no text: no <split> file and no plain text file ({', '.join(TEXT_FILE_SUFFIXES)})"
        )
    return [line for file in files for line in _lines(file)]


def _text_of(table: datasets.Dataset, text_column: str, source: str) -> datasets.Dataset:
    if text_column not in table.column_names:
        raise KeyError(f"{source}: no text column {text_column!r}; available columns: "
                       f"{', '.join(table.column_names)} (set text_column=)")
    table = table.select_columns([text_column])
    return table if text_column == TEXT_COLUMN else table.rename_column(text_column, TEXT_COLUMN)


def document_separator(tokenizer: PreTrainedTokenizerBase) -> int:
    """The token between two documents of a packed stream: the tokenizer's end of text (a BERT tokenizer's
    ``[SEP]`` where it has no ``eos_token``)."""
    separator = tokenizer.eos_token_id if tokenizer.eos_token_id is not None else tokenizer.sep_token_id
    if separator is None:
        raise ValueError(f"{type(tokenizer).__name__} has neither an eos_token nor a sep_token to end a document with")
    return separator


def pack_causal_lm(documents: datasets.Dataset, tokenizer: PreTrainedTokenizerBase, block_size: int) -> datasets.Dataset:
    """Blocks of ``block_size`` tokens (``input_ids``, ``attention_mask``, ``labels``, torch-formatted) cut
    from the documents' tokens, each document followed by :func:`document_separator`; the stream's tail
    shorter than a block is dropped, as ``run_clm.py`` drops it."""
    if block_size < 2:
        raise ValueError(f"a block needs at least 2 tokens (one to predict from, one to predict), got {block_size}")
    if TEXT_COLUMN not in documents.column_names:
        raise KeyError(f"pack_causal_lm needs a {TEXT_COLUMN!r} column; got {', '.join(documents.column_names)}")
    separator = document_separator(tokenizer)

    def blocks(batch: dict[str, list]) -> dict[str, list]:
        ids = tokenizer(batch[TEXT_COLUMN], add_special_tokens=False)["input_ids"]
        stream = list(chain.from_iterable([*document, separator] for document in ids))
        cut = [stream[start:start + block_size] for start in range(0, len(stream) - block_size + 1, block_size)]
        return {"input_ids": cut, "attention_mask": [[1] * block_size for _ in cut], LABEL_COLUMN: cut}

    # one map batch is one stream: batches of 1,000 documents lose at most one tail of a block each
    packed = documents.map(blocks, batched=True, batch_size=1000, remove_columns=documents.column_names,
                           new_fingerprint=tokenizing_fingerprint(documents))
    if len(packed) == 0:
        raise ValueError(f"{len(documents)} documents hold fewer than block_size={block_size} tokens: no block to train on")
    packed.set_format("torch")
    return packed
