"""Data loading, partitioning and preprocessing on the real offline data in ../shared/data."""

from __future__ import annotations

import gzip

import datasets
import numpy as np
import pytest
import torch
from transformers import AutoTokenizer, BertForSequenceClassification, Trainer, TrainingArguments

from fedgrow_hf.data import (
    align_class_labels,
    dirichlet_partition,
    holdout_split,
    iid_partition,
    image_split_names,
    load_image_classification,
    load_text_classification,
    pick_eval_split,
    read_idx,
    resize_images,
    text_split_names,
    tokenize_text,
)
from fedgrow_hf.data.common import parse_hub_name, tokenizing_fingerprint
from fedgrow_hf.metrics import compute_classification_metrics


def write_idx(path, array: np.ndarray) -> None:
    """Gzipped IDX (uint8) writer, the inverse of read_idx, for building small MNIST-layout dirs."""
    header = bytes([0, 0, 0x08, array.ndim]) + np.asarray(array.shape, dtype=">i4").tobytes()
    with gzip.open(path, "wb") as handle:
        handle.write(header + array.astype(np.uint8).tobytes())


# --- text ---------------------------------------------------------------------------------------


def test_sst2_directory_splits_load_as_text_and_label(shared_data_dir):
    test = load_text_classification(str(shared_data_dir / "sst2"), "test")
    assert test.column_names == ["text", "label"]
    assert len(test) == 872
    assert set(test["label"]) == {0, 1}
    assert all(isinstance(t, str) and t for t in test["text"][:50])
    single_file = load_text_classification(str(shared_data_dir / "sst2" / "test.tsv"))
    assert single_file["text"] == test["text"]


def test_limit_is_a_seeded_subset(shared_data_dir):
    source = str(shared_data_dir / "sst2")
    full = load_text_classification(source, "test")
    first = load_text_classification(source, "test", limit=50, seed=3)
    again = load_text_classification(source, "test", limit=50, seed=3)
    other = load_text_classification(source, "test", limit=50, seed=4)
    assert len(first) == 50
    assert first["text"] == again["text"]
    assert first["text"] != other["text"]
    assert set(first["text"]) <= set(full["text"])
    assert len(load_text_classification(source, "test", limit=10_000)) == 872


def test_csv_and_jsonl_with_string_labels_and_custom_columns(tmp_path):
    rows = [("great film", "pos"), ("dull", "neg"), ("fine", "pos")]
    (tmp_path / "train.csv").write_text("review,sentiment\n" + "\n".join(f"{t},{s}" for t, s in rows) + "\n")
    (tmp_path / "dev.jsonl").write_text(
        "\n".join(f'{{"review": "{t}", "sentiment": "{s}"}}' for t, s in rows)
    )
    for split in ("train", "dev"):
        loaded = load_text_classification(
            str(tmp_path), split, text_column="review", label_column="sentiment"
        )
        assert loaded["text"] == [t for t, _ in rows]
        assert loaded.features["label"].names == ["neg", "pos"]
        assert loaded["label"] == [1, 0, 1]


def test_text_errors_name_the_problem(tmp_path, shared_data_dir):
    with pytest.raises(FileNotFoundError, match="no file for split 'validation'.*dev.tsv"):
        load_text_classification(str(shared_data_dir / "sst2"), "validation")
    with pytest.raises(KeyError, match="'review'.*available columns: sentence, label"):
        load_text_classification(str(shared_data_dir / "sst2"), "test", text_column="review")
    with pytest.raises(FileNotFoundError, match="neither a local file/directory nor a loadable Hub dataset"):
        load_text_classification(str(tmp_path / "missing.tsv"))
    with pytest.raises(ValueError, match="limit must be a positive"):
        load_text_classification(str(shared_data_dir / "sst2"), "test", limit=0)


def test_empty_files_are_refused_by_name(tmp_path):
    (tmp_path / "empty.tsv").write_text("")
    (tmp_path / "header.csv").write_text("sentence,label\n")
    with pytest.raises(ValueError, match="empty.tsv is empty"):
        load_text_classification(str(tmp_path / "empty.tsv"))
    with pytest.raises(ValueError, match="header.csv holds no examples"):
        load_text_classification(str(tmp_path / "header.csv"))


# --- evaluation splits and one label encoding ----------------------------------------------------


def test_split_names_and_the_preferred_evaluation_split(tmp_path, shared_data_dir):
    sst2 = text_split_names(str(shared_data_dir / "sst2"))
    assert sst2 == ["dev", "test", "train"] and pick_eval_split(sst2, "train") == "test"
    assert pick_eval_split(sst2, "test") == "dev" and pick_eval_split(["train"], "train") is None
    assert text_split_names(str(shared_data_dir / "sst2" / "dev.tsv")) == []  # one file is one split
    assert image_split_names(str(shared_data_dir / "mnist")) == ["train", "test"]


def test_string_labels_of_two_splits_get_one_encoding():
    train = datasets.Dataset.from_dict({"label": ["world", "sports", "arts", "sports"]}).class_encode_column("label")
    dev = datasets.Dataset.from_dict({"label": ["world", "sports"]}).class_encode_column("label")
    assert dev["label"] == [1, 0]  # encoded alone, "world" is class 1 of dev but class 2 of train
    aligned = align_class_labels({"train": train, "dev": dev})
    for split in aligned.values():
        assert split.features["label"].names == ["arts", "sports", "world"]
    assert aligned["train"]["label"] == [2, 1, 0, 1] and aligned["dev"]["label"] == [2, 1]


def test_integer_labels_keep_their_order_and_hidden_labels_are_refused():
    aligned = align_class_labels({
        "train": datasets.Dataset.from_dict({"label": [2, 10, 2]}),
        "test": datasets.Dataset.from_dict({"label": [10]}),
    })  # fmt: skip
    assert aligned["train"].features["label"].names == ["2", "10"]
    assert aligned["train"]["label"] == [0, 1, 0] and aligned["test"]["label"] == [1]
    shared = datasets.ClassLabel(names=["negative", "positive"])  # a dataset's own order is kept
    splits = {
        name: datasets.Dataset.from_dict({"label": [1, 0]}, features=datasets.Features({"label": shared}))
        for name in ("train", "test")
    }
    assert align_class_labels(splits)["test"].features["label"].names == ["negative", "positive"]
    with pytest.raises(ValueError, match="split 'test' has examples without a label"):
        align_class_labels({"train": splits["train"], "test": datasets.Dataset.from_dict({"label": [-1, -1]})})


def test_holdout_split_is_seeded_stratified_and_disjoint(shared_data_dir):
    dev = load_text_classification(str(shared_data_dir / "sst2"), "dev", limit=100)
    (data,) = align_class_labels({"dev": dev}).values()
    train, held_out = holdout_split(data, 0.2, seed=0)
    assert (len(train), len(held_out)) == (80, 20)
    assert not set(train["text"]) & set(held_out["text"])
    assert sorted([*train["text"], *held_out["text"]]) == sorted(data["text"])
    positive_share = np.mean(data["label"])
    assert abs(np.mean(held_out["label"]) - positive_share) <= 1 / len(held_out)
    assert holdout_split(data, 0.2, seed=0)[1]["text"] == held_out["text"]
    assert holdout_split(data, 0.2, seed=1)[1]["text"] != held_out["text"]
    with pytest.raises(ValueError, match="between 0 and 1"):
        holdout_split(data, 1.0, seed=0)


def test_hub_names_route_configs_to_load_dataset(monkeypatch):
    assert parse_hub_name("glue/sst2") == ("glue", "sst2")
    assert parse_hub_name("nyu-mll/glue:sst2") == ("nyu-mll/glue", "sst2")
    assert parse_hub_name("stanfordnlp/imdb") == ("stanfordnlp/imdb", None)
    calls = []

    def fake_load_dataset(name, config=None, split=None):
        calls.append((name, config, split))
        return datasets.Dataset.from_dict({"idx": [0, 1], "sentence": ["a", "b"], "label": [0, 1]})

    monkeypatch.setattr(datasets, "load_dataset", fake_load_dataset)
    loaded = load_text_classification("glue/sst2", "validation")
    assert calls == [("glue", "sst2", "validation")]
    assert loaded.column_names == ["text", "label"]


# --- images -------------------------------------------------------------------------------------


def test_mnist_t10k_only_uses_fixed_8000_2000_split(shared_data_dir):
    mnist = shared_data_dir / "mnist"
    images = read_idx(mnist / "t10k-images-idx3-ubyte.gz")
    labels = read_idx(mnist / "t10k-labels-idx1-ubyte.gz")
    assert images.shape == (10_000, 28, 28) and labels.shape == (10_000,)
    test = load_image_classification(str(mnist), "test").with_format("numpy")[:]
    assert len(test["label"]) == 2_000
    np.testing.assert_array_equal(test["label"], labels[8_000:])
    np.testing.assert_allclose(test["pixel_values"][:, 0], images[8_000:] / 255.0, atol=1e-7)
    train = load_image_classification(str(mnist), "train", limit=100, seed=0)
    assert len(train) == 100 and train.features["pixel_values"].shape == (1, 28, 28)


def test_mnist_directory_with_train_files_uses_them(tmp_path, shared_data_dir):
    images = read_idx(shared_data_dir / "mnist" / "t10k-images-idx3-ubyte.gz")[:30]
    labels = read_idx(shared_data_dir / "mnist" / "t10k-labels-idx1-ubyte.gz")[:30]
    write_idx(tmp_path / "train-images-idx3-ubyte.gz", images[:20])
    write_idx(tmp_path / "train-labels-idx1-ubyte.gz", labels[:20])
    write_idx(tmp_path / "t10k-images-idx3-ubyte.gz", images[20:])
    write_idx(tmp_path / "t10k-labels-idx1-ubyte.gz", labels[20:])
    train = load_image_classification(str(tmp_path), "train")
    test = load_image_classification(str(tmp_path), "test")
    assert (len(train), len(test)) == (20, 10)
    assert train["label"] == labels[:20].tolist()


def test_image_errors_name_the_problem(tmp_path):
    (tmp_path / "t10k-images-idx3-ubyte.gz").write_bytes(gzip.compress(b"not an idx file"))
    with pytest.raises(ValueError, match="not an IDX file"):
        read_idx(tmp_path / "t10k-images-idx3-ubyte.gz")
    with pytest.raises(FileNotFoundError, match="no MNIST IDX files"):
        load_image_classification(str(tmp_path / ".."), "train")
    with pytest.raises(ValueError, match="fixed splits 'train' and 'test'"):
        load_image_classification("sklearn-digits", "validation")


def test_sklearn_digits_fixed_split_and_resize_for_vit():
    train = load_image_classification("sklearn-digits", "train")
    test = load_image_classification("sklearn-digits", "test")
    assert (len(train), len(test)) == (1_437, 360)
    pixels = test.with_format("numpy")[:]["pixel_values"]
    assert pixels.shape == (360, 1, 8, 8) and pixels.min() >= 0.0 and pixels.max() == 1.0
    resized = resize_images(test, image_size=16, num_channels=3)
    batch = resized[:4]["pixel_values"]
    assert isinstance(batch, torch.Tensor) and batch.shape == (4, 3, 16, 16)
    assert batch.min() >= 0 and batch.max() <= 1
    torch.testing.assert_close(batch[:, 0], batch[:, 2])


# --- partitions ---------------------------------------------------------------------------------


def assert_is_partition(parts: list[list[int]], n: int) -> None:
    flat = [i for part in parts for i in part]
    assert sorted(flat) == list(range(n))


def test_iid_partition_is_balanced_and_deterministic():
    parts = iid_partition(103, 4, seed=1)
    assert_is_partition(parts, 103)
    assert {len(p) for p in parts} == {25, 26}
    assert parts == iid_partition(103, 4, seed=1)
    assert parts != iid_partition(103, 4, seed=2)


def test_dirichlet_partition_skews_labels_by_alpha(shared_data_dir):
    labels = np.asarray(load_image_classification(str(shared_data_dir / "mnist"), "train")["label"])

    def mean_top_class_share(alpha: float) -> float:
        parts = dirichlet_partition(labels, 5, alpha, seed=0, min_size=50)
        assert_is_partition(parts, len(labels))
        assert min(len(p) for p in parts) >= 50
        assert parts == dirichlet_partition(labels, 5, alpha, seed=0, min_size=50)
        return float(np.mean([np.bincount(labels[p], minlength=10).max() / len(p) for p in parts]))

    skewed, near_iid = mean_top_class_share(0.1), mean_top_class_share(100.0)
    assert skewed > 0.4  # parties dominated by few classes
    assert near_iid < 0.15  # MNIST classes are ~10 % each


def test_dirichlet_partition_can_require_every_class_in_every_party():
    """Unguarded, this draw gives a party sentences of one class only; ``min_class_size`` redraws until none does."""
    labels = np.repeat([0, 1], 3000)
    unguarded = dirichlet_partition(labels, 3, 0.5, seed=1, min_size=1250)
    assert min(np.bincount(labels[p], minlength=2).min() for p in unguarded) == 0
    guarded = dirichlet_partition(labels, 3, 0.5, seed=1, min_size=1250, min_class_size=100)
    assert_is_partition(guarded, len(labels))
    assert min(np.bincount(labels[p], minlength=2).min() for p in guarded) >= 100
    assert guarded == dirichlet_partition(labels, 3, 0.5, seed=1, min_size=1250, min_class_size=100)
    with pytest.raises(ValueError, match=">= 1001 of every class"):
        dirichlet_partition(labels, 3, 0.5, seed=0, min_size=10, min_class_size=1001)


def test_dirichlet_partition_rejects_impossible_requests():
    with pytest.raises(ValueError, match="at least 10 examples each from only 30"):
        dirichlet_partition([0, 1, 2] * 10, 4, 0.5, seed=0, min_size=10)
    with pytest.raises(ValueError, match="alpha must be > 0"):
        dirichlet_partition([0, 1], 2, 0.0, seed=0, min_size=1)


# --- preprocessing into Trainer -----------------------------------------------------------------


def test_tokenized_sst2_trains_and_evaluates_with_trainer(
    tmp_path, shared_data_dir, minilm_path, tiny_bert_config
):
    tokenizer = AutoTokenizer.from_pretrained(minilm_path)
    train = tokenize_text(load_text_classification(str(shared_data_dir / "sst2"), limit=32), tokenizer, 24)
    dev = tokenize_text(
        load_text_classification(str(shared_data_dir / "sst2"), "dev", limit=16), tokenizer, 24
    )
    assert set(train.column_names) == {"input_ids", "token_type_ids", "attention_mask", "labels"}
    assert train[0]["input_ids"].shape == (24,)
    torch.manual_seed(0)
    model = BertForSequenceClassification(tiny_bert_config(layers=1, hidden=16, heads=2, num_labels=2))
    args = TrainingArguments(
        output_dir=str(tmp_path),
        max_steps=2,
        per_device_train_batch_size=8,
        per_device_eval_batch_size=8,
        report_to="none",
        use_cpu=True,
        save_strategy="no",
    )
    trainer = Trainer(
        model, args, train_dataset=train, eval_dataset=dev, compute_metrics=compute_classification_metrics
    )
    assert trainer.train().global_step == 2
    scores = trainer.evaluate()
    for key in ("eval_accuracy", "eval_precision_macro", "eval_f1_macro"):
        assert 0.0 <= scores[key] <= 1.0


def test_hub_image_dataset_is_converted_to_pixel_values(monkeypatch):
    images = np.arange(2 * 4 * 4 * 3, dtype=np.uint8).reshape(2, 4, 4, 3)

    def fake_load_dataset(name, config=None, split=None):
        assert (name, config, split) == ("uoft-cs/cifar10", None, "test")
        return datasets.Dataset.from_dict(
            {"img": list(images), "label": [3, 7]},
            features=datasets.Features(
                {"img": datasets.Array3D((4, 4, 3), "uint8"), "label": datasets.ClassLabel(num_classes=10)}
            ),
        )

    monkeypatch.setattr(datasets, "load_dataset", fake_load_dataset)
    loaded = load_image_classification("uoft-cs/cifar10", "test").with_format("numpy")[:]
    np.testing.assert_allclose(loaded["pixel_values"], images.transpose(0, 3, 1, 2) / 255.0, atol=1e-7)
    assert loaded["label"].tolist() == [3, 7]


def test_only_a_dataset_with_cache_files_has_its_tokenising_map_named_by_hashing(tmp_path, minilm_path):
    """In memory, a map's name finds no cache file, so the tokenizer is not hashed for it (a random name, and
    the same rows); a dataset backed by cache files keeps the hashed name that finds its tokenised copy."""
    rows = datasets.Dataset.from_dict({"text": ["a good film", "a bad one"], "label": [1, 0]})
    names = {tokenizing_fingerprint(rows) for _ in range(2)}
    assert len(names) == 2 and all(len(name) == 16 for name in names)
    tokenizer = AutoTokenizer.from_pretrained(minilm_path)
    rows.save_to_disk(str(tmp_path / "rows"))
    on_disk = datasets.load_from_disk(str(tmp_path / "rows"))
    assert on_disk.cache_files and tokenizing_fingerprint(on_disk) is None
    in_memory, cached = (tokenize_text(data, tokenizer, 8).with_format(None)[:] for data in (rows, on_disk))
    assert in_memory == cached and in_memory["labels"] == [1, 0]
