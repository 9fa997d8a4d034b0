"""Datasets for fedgrow-hf: loading (local files, MNIST IDX, sklearn digits, Hub), partitioning among
parties, and preprocessing into torch-formatted rows that ``transformers.Trainer`` batches directly.

The package never hard-codes a data location: callers pass a path or a Hub dataset id.
"""

from .image import SKLEARN_DIGITS, load_image_classification, read_idx, resize_images
from .partition import dirichlet_partition, iid_partition
from .text import load_text_classification, tokenize_text

__all__ = [
    "SKLEARN_DIGITS",
    "dirichlet_partition",
    "iid_partition",
    "load_image_classification",
    "load_text_classification",
    "read_idx",
    "resize_images",
    "tokenize_text",
]
