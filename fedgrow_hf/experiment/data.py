"""A party's data, built from the experiment config: its share of ``[data].split`` (partitioned among the
parties, deterministic in the config), its held-out share, and the common test set, ready for ``Trainer``:
labelled sentences or images for a classifier, blocks of text for a language model."""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path

import datasets
from transformers import AutoTokenizer

from ..data import (
    check_label_ids,
    dirichlet_partition,
    iid_partition,
    load_image_classification,
    load_text_classification,
    load_text_corpus,
    pack_causal_lm,
    resize_images,
    tokenize_text,
)
from ..sources import minilm_path
from .config import CORPUS, IMAGES, TEXT, FederationConfig
from .models import MINILM, parent_path, source_path, target_config


def _load_split(config: FederationConfig, split: str, limit: int | None) -> datasets.Dataset:
    """Raw ``text``/``pixel_values`` + ``label`` rows of ``split`` of ``[data].source``; a language model's
    documents (``text`` only)."""
    data, kind = config.data, config.family.data
    if kind == CORPUS:
        return load_text_corpus(data.source, split, text_column=data.text_column, limit=limit, seed=config.data_seed)
    if kind == TEXT:
        dataset = load_text_classification(
            data.source, split, text_column=data.text_column, label_column=data.label_column, limit=limit,
            seed=config.data_seed,
        )
    else:
        dataset = load_image_classification(data.source, split, limit=limit, seed=config.data_seed)
    check_label_ids(dataset["label"], config.model.num_labels, f"{data.source} (split {split!r})")
    return dataset


@lru_cache(maxsize=4)
def _partitioned(config_json: str) -> tuple[datasets.Dataset, list[list[int]]]:
    config = FederationConfig.from_dict(json.loads(config_json))
    data = config.data
    dataset = _load_split(config, data.split, data.limit)
    if data.partition == "dirichlet":
        parts = dirichlet_partition(dataset["label"], config.num_parties, data.alpha, config.data_seed,
                                    min_size=data.min_size, min_class_size=data.min_class_size)
    else:
        parts = iid_partition(len(dataset), config.num_parties, config.data_seed)
    return dataset, parts


def check_data(config: FederationConfig) -> None:
    """Load and share out ``[data].split`` once (its labels checked against ``num_labels``), so that bad data
    stops a local run before it writes anything; in-process runs reuse what this loaded."""
    _partitioned(config.to_json())


def party_shares(config: FederationConfig, party_id: int) -> tuple[datasets.Dataset, datasets.Dataset]:
    """The party's raw (untokenised) train share and held-out eval share; with ``[data].dev_fraction`` (a
    learning-rate search's), the train share without its development split (:func:`party_dev_set`)."""
    train, held_out = _party_split(config, party_id)
    return (_dev_split(config, train)["train"] if config.data.dev_fraction else train), held_out


def party_dev_set(config: FederationConfig, party_id: int) -> datasets.Dataset:
    """The development split a learning-rate search scores on, ready for ``Trainer``: ``[data].dev_fraction`` of
    the party's training share (seeded by ``data_seed``), which :func:`party_shares` leaves out of what the party
    trains on, so that neither its training nor its source (built from its share) has seen it."""
    if not config.data.dev_fraction:
        raise ValueError("[data].dev_fraction is 0: this config holds no development split")
    return model_inputs(config, _dev_split(config, _party_split(config, party_id)[0])["test"])


def _party_split(config: FederationConfig, party_id: int) -> tuple[datasets.Dataset, datasets.Dataset]:
    dataset, parts = _partitioned(config.to_json())
    split = dataset.select(parts[party_id]).train_test_split(
        test_size=config.data.eval_fraction, seed=config.data_seed
    )
    return split["train"], split["test"]


def _dev_split(config: FederationConfig, train: datasets.Dataset) -> datasets.DatasetDict:
    return train.train_test_split(test_size=config.data.dev_fraction, seed=config.data_seed)


def party_datasets(config: FederationConfig, party_id: int) -> tuple[datasets.Dataset, datasets.Dataset]:
    """The party's private train share and its held-out eval share, ready for ``Trainer``.

    The eval share is ``eval_fraction`` of the party's own data, held out: a party is evaluated
    on data distributed like its own (under a Dirichlet split, label skew included).
    """
    train, held_out = party_shares(config, party_id)
    return model_inputs(config, train), model_inputs(config, held_out)


def common_test_set(config: FederationConfig) -> datasets.Dataset:
    """``[data].test_split`` of the data source, whole (or a seeded ``test_limit`` of it) and ready for
    ``Trainer``: one test set for every party and method, disjoint from the split the parties share out
    (``[data].split``).

    A single data file is one split, so it has no test split to offer: that is an error rather than
    scoring models on their own training data.
    """
    data = config.data
    if data.test_split == data.split:
        raise ValueError(f"[data].test_split and [data].split are both {data.split!r}: the test split must be "
                         "unseen")
    if Path(data.source).expanduser().is_file():
        raise ValueError(f"[data].source {data.source} is a single file, so it has no separate test split; "
                         "use a folder holding <split>.<ext> files or a Hub dataset")
    return model_inputs(config, _load_split(config, data.test_split, data.test_limit or None))


def model_inputs(config: FederationConfig, rows: datasets.Dataset) -> datasets.Dataset:
    """Raw rows -> what the model takes: tokenised text, or images at the target's size, with their
    ``labels``; a language model's documents packed into blocks of ``max_length`` tokens."""
    kind = config.family.data
    if kind == IMAGES:
        return resize_images(rows, config.data.image_size, config.data.num_channels).rename_column("label", "labels")
    tokenizer = AutoTokenizer.from_pretrained(tokenizer_path(config))
    if kind == TEXT:
        return tokenize_text(rows, tokenizer, config.data.max_length)
    vocab_size = target_config(config).vocab_size
    if len(tokenizer) > vocab_size:
        raise ValueError(f"the tokenizer {tokenizer_path(config)} has {len(tokenizer):,} tokens, more than "
                         f"[model].target's vocab_size {vocab_size:,}: set vocab_size = {len(tokenizer)}")
    return pack_causal_lm(rows, tokenizer, config.data.max_length)


def tokenizer_path(config: FederationConfig) -> str:
    """``[data].tokenizer``, else the first party whose source is a checkpoint with a tokenizer."""
    if config.data.tokenizer:
        return minilm_path() if config.data.tokenizer == MINILM else config.data.tokenizer
    for party in config.parties:
        if party.source:
            return source_path(party)
        if party.derive is not None:
            return parent_path(party)
    raise ValueError("no tokenizer: set [data].tokenizer (no party has a checkpoint source to take it from)")
