"""Image classification datasets (MNIST IDX files, scikit-learn digits, Hub) as ``pixel_values``/``label``.

Every loader returns float32 ``pixel_values`` of shape ``(channels, height, width)`` scaled to [0, 1]
(raw intensity / max intensity; no mean/std standardisation, since the tiny ViTs here are trained from
scratch on these images) and an integer ``label`` (ClassLabel). IDX files are parsed with gzip + numpy,
so no torchvision is needed.

Fixed splits, so every party and every run sees the same examples:

* MNIST directory with ``train-*`` and ``t10k-*`` files: ``train`` = the 60,000 training images,
  ``test`` = the 10,000 test images.
* MNIST directory with only the ``t10k-*`` files (as in this project's offline data): ``train`` = the
  first 8,000 images, ``test`` = the last 2,000.
* ``"sklearn-digits"`` (1,797 8x8 images): ``train`` = the first 1,437, ``test`` = the last 360.
"""

from __future__ import annotations

import gzip
from pathlib import Path

import datasets
import numpy as np

from .common import hub_dataset, hub_split_names, subsample

SKLEARN_DIGITS = "sklearn-digits"
MNIST_T10K_TRAIN_SIZE = 8_000
DIGITS_TRAIN_SIZE = 1_437
FIXED_SPLITS = ("train", "test")
IDX_DTYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def read_idx(path: str | Path) -> np.ndarray:
    """Parse an IDX file (optionally gzipped): 2 zero bytes, a dtype code, ndim, big-endian int32 dims, data."""
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as handle:
        raw = handle.read()
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in IDX_DTYPES:
        raise ValueError(f"{path} is not an IDX file (bad magic number {raw[:4].hex()})")
    ndim = raw[3]
    shape = tuple(int(d) for d in np.frombuffer(raw, dtype=">i4", count=ndim, offset=4))
    data = np.frombuffer(raw, dtype=IDX_DTYPES[raw[2]], offset=4 + 4 * ndim)
    if data.size != int(np.prod(shape)):
        raise ValueError(f"{path}: header says shape {shape} but holds {data.size} values")
    return data.reshape(shape)


def _idx_pair(directory: Path, prefix: str) -> tuple[np.ndarray, np.ndarray] | None:
    images = directory / f"{prefix}-images-idx3-ubyte.gz"
    labels = directory / f"{prefix}-labels-idx1-ubyte.gz"
    if not (images.is_file() and labels.is_file()):
        return None
    return read_idx(images), read_idx(labels)


def _mnist_split(directory: Path, split: str) -> tuple[np.ndarray, np.ndarray]:
    """Images (N, 28, 28) uint8 and labels of ``split`` under the fixed splits in the module docstring."""
    test = _idx_pair(directory, "t10k")
    train = _idx_pair(directory, "train")
    if test is None:
        raise FileNotFoundError(
            f"{directory} holds no MNIST IDX files (need t10k-images-idx3-ubyte.gz and t10k-labels-idx1-ubyte.gz)"
        )
    if train is not None:
        return train if split == "train" else test
    images, labels = test
    cut = MNIST_T10K_TRAIN_SIZE
    return (images[:cut], labels[:cut]) if split == "train" else (images[cut:], labels[cut:])


def _digits_split(split: str) -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import load_digits

    digits = load_digits()
    cut = DIGITS_TRAIN_SIZE
    images, labels = digits.images.astype(np.float32) / 16.0, digits.target
    return (images[:cut], labels[:cut]) if split == "train" else (images[cut:], labels[cut:])


def _check_split(split: str, source: str) -> None:
    if split not in FIXED_SPLITS:
        raise ValueError(f"{source} has fixed splits 'train' and 'test', got split={split!r}")


def _to_channels_first(images: np.ndarray) -> np.ndarray:
    """(N, H, W) or (N, H, W, C) -> float32 (N, C, H, W) in [0, 1]; integer pixels are 8-bit (0..255)."""
    array = np.asarray(images)
    scale = 255.0 if np.issubdtype(array.dtype, np.integer) else 1.0
    array = array.astype(np.float32) / scale
    return array[:, None] if array.ndim == 3 else array.transpose(0, 3, 1, 2)


def _from_arrays(images: np.ndarray, labels: np.ndarray, num_classes: int) -> datasets.Dataset:
    pixels = _to_channels_first(images)
    features = datasets.Features(
        {
            "pixel_values": datasets.Array3D(shape=pixels.shape[1:], dtype="float32"),
            "label": datasets.ClassLabel(num_classes=num_classes),
        }
    )
    return datasets.Dataset.from_dict(
        {"pixel_values": pixels, "label": labels.astype(np.int64)}, features=features
    )


def _from_hub(source: str, split: str) -> datasets.Dataset:
    dataset = hub_dataset(source, split)
    image_column = next((c for c in ("image", "img", "pixel_values") if c in dataset.column_names), None)
    if image_column is None or "label" not in dataset.column_names:
        raise KeyError(
            f"{source}: expected an image column (image/img/pixel_values) and 'label'; got "
            f"{', '.join(dataset.column_names)}"
        )
    rows = dataset[:]
    images = np.stack([np.asarray(image) for image in rows[image_column]])
    labels = np.asarray(rows["label"])
    label_feature = dataset.features["label"]
    num_classes = (
        label_feature.num_classes if isinstance(label_feature, datasets.ClassLabel) else int(labels.max()) + 1
    )
    return _from_arrays(images, labels, num_classes)


def image_split_names(source: str) -> list[str]:
    """The splits ``load_image_classification(source, split)`` can load (fixed ones for MNIST and digits)."""
    if source == SKLEARN_DIGITS or Path(source).expanduser().is_dir():
        return list(FIXED_SPLITS)
    return hub_split_names(source)


def load_image_classification(
    source: str, split: str = "train", *, limit: int | None = None, seed: int = 0
) -> datasets.Dataset:
    """Load ``pixel_values`` (float32 C x H x W in [0, 1]) and ``label`` from an MNIST IDX directory,
    ``"sklearn-digits"`` or a Hub dataset id (``"name"`` or ``"name:config"``).

    See the module docstring for the fixed train/test splits. ``limit`` keeps a seeded random subset.
    """
    path = Path(source).expanduser()
    if source == SKLEARN_DIGITS:
        _check_split(split, source)
        dataset = _from_arrays(*_digits_split(split), num_classes=10)
    elif path.is_dir():
        _check_split(split, source)
        dataset = _from_arrays(*_mnist_split(path, split), num_classes=10)
    else:
        dataset = _from_hub(source, split)
    return subsample(dataset, limit, seed)


def resize_images(
    dataset: datasets.Dataset, image_size: int, num_channels: int | None = None
) -> datasets.Dataset:
    """Bilinearly resize ``pixel_values`` to ``image_size`` (square) and, if asked, repeat a single
    channel to ``num_channels`` (e.g. grey MNIST for a 3-channel ViT). Returns a torch-formatted dataset.
    """
    import torch
    import torch.nn.functional as F

    channels = dataset.features["pixel_values"].shape[0]
    target_channels = num_channels or channels
    if target_channels != channels and channels != 1:
        raise ValueError(f"cannot turn {channels}-channel images into {target_channels} channels")

    def resize(batch):
        pixels = torch.as_tensor(np.asarray(batch["pixel_values"], dtype=np.float32))
        if pixels.shape[-1] != image_size or pixels.shape[-2] != image_size:
            pixels = F.interpolate(
                pixels, size=(image_size, image_size), mode="bilinear", align_corners=False
            )
        if target_channels != channels:
            pixels = pixels.expand(-1, target_channels, -1, -1)
        return {"pixel_values": pixels.clamp(0.0, 1.0).numpy()}

    features = dataset.features.copy()
    features["pixel_values"] = datasets.Array3D(
        shape=(target_channels, image_size, image_size), dtype="float32"
    )
    resized = dataset.with_format("numpy").map(resize, batched=True, features=features)
    resized.set_format("torch")
    return resized
