"""Datasets for fedgrow-hf: loading (local files, MNIST IDX, sklearn digits, Hub), partitioning among
parties, train/evaluation splits with one label encoding, and preprocessing into torch-formatted rows
that ``transformers.Trainer`` batches directly: tokenised examples for a classifier, packed blocks of a
text corpus for a causal language model.

The package never hard-codes a data location: callers pass a path or a Hub dataset id.
"""

from .collate import trim_padding_collator
from .common import LabelError, check_label_ids
from .corpus import corpus_split_names, load_text_corpus, pack_causal_lm
from .image import SKLEARN_DIGITS, image_split_names, load_image_classification, read_idx, resize_images
from .partition import dirichlet_partition, iid_partition
from .splits import EVAL_SPLIT_NAMES, align_class_labels, holdout_split, pick_eval_split
from .text import load_text_classification, text_split_names, tokenize_text

__all__ = [
    "EVAL_SPLIT_NAMES",
    "SKLEARN_DIGITS",
    "LabelError",
    "align_class_labels",
    "check_label_ids",
    "corpus_split_names",
    "dirichlet_partition",
    "holdout_split",
    "iid_partition",
    "image_split_names",
    "load_image_classification",
    "load_text_corpus",
    "load_text_classification",
    "pack_causal_lm",
    "pick_eval_split",
    "read_idx",
    "resize_images",
    "text_split_names",
    "tokenize_text",
    "trim_padding_collator",
]
