"""Classification metrics as local ``evaluate`` modules, so evaluation never needs the Hub; and a causal
language model's, from the same definitions.

``evaluate.load("accuracy")`` downloads a script from the Hub; these modules ship inside the package
(``fedgrow_hf/metrics/<name>/<name>.py``, included as package data) and are loaded by path.
``compute_classification_metrics`` is ready for ``transformers.Trainer(compute_metrics=...)``;
``compute_causal_lm_metrics`` with ``preprocess_logits_for_metrics=next_token_predictions`` scores a
decoder's next-token predictions, and :func:`perplexity` turns its mean cross-entropy into a perplexity.
"""

from __future__ import annotations

import math
from functools import cache
from pathlib import Path

import numpy as np
import torch

from .classification import accuracy, precision_recall_f1

# Trainer's label for a position that is not scored (padding, a prompt).
IGNORED_LABEL = -100

METRICS_DIR = Path(__file__).resolve().parent
METRIC_NAMES = ("accuracy", "precision", "f1")


def metric_path(name: str) -> Path:
    """Directory of the local metric module ``name`` (what ``evaluate.load`` takes)."""
    if name not in METRIC_NAMES:
        raise ValueError(f"unknown metric {name!r}; the local metrics are {', '.join(METRIC_NAMES)}")
    return METRICS_DIR / name


def load_metric(name: str, **kwargs):
    """``evaluate.load`` of the local module ``name`` ("accuracy", "precision" or "f1"); no Hub access."""
    import evaluate

    return evaluate.load(str(metric_path(name)), **kwargs)


@cache
def _cached_metric(name: str):
    return load_metric(name)


def logits_to_predictions(predictions) -> np.ndarray:
    """Class ids from what ``Trainer`` passes: logits ``(n, classes)``, a tuple led by logits, or ids."""
    if isinstance(predictions, (tuple, list)) and predictions and np.ndim(predictions[0]) >= 1:
        predictions = predictions[0]
    array = np.asarray(predictions)
    return array.argmax(axis=-1) if array.ndim == 2 else array.reshape(-1)


def compute_classification_metrics(eval_pred) -> dict[str, float]:
    """Accuracy, macro precision and macro F1 of an ``EvalPrediction`` (or ``(predictions, labels)``)."""
    predictions, labels = eval_pred[0], eval_pred[1]
    preds = logits_to_predictions(predictions)
    refs = np.asarray(labels).reshape(-1)
    return {
        "accuracy": _cached_metric("accuracy").compute(predictions=preds, references=refs)["accuracy"],
        "precision_macro": _cached_metric("precision").compute(predictions=preds, references=refs)[
            "precision"
        ],
        "f1_macro": _cached_metric("f1").compute(predictions=preds, references=refs)["f1"],
    }


def next_token_predictions(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """``Trainer``'s ``preprocess_logits_for_metrics`` for a decoder: each position's most likely next token.

    Keeping the ids instead of the logits is what lets an evaluation set of many blocks fit in memory:
    Trainer would otherwise gather a vocabulary-wide row for every token."""
    return logits.argmax(dim=-1)


def compute_causal_lm_metrics(eval_pred) -> dict[str, float]:
    """Next-token accuracy and macro precision (over the tokens that occur) of a decoder's predictions.

    ``eval_pred`` holds :func:`next_token_predictions` and the blocks' labels: the prediction at position
    ``t`` is scored against the label at ``t + 1``, as the model's loss shifts them; positions labelled
    ``-100`` are not scored. These are the classification scores over the vocabulary, so a federation
    reports the same figures (``accuracy``, ``precision_macro``) for a decoder as for a classifier."""
    predictions, labels = np.asarray(eval_pred[0]), np.asarray(eval_pred[1])
    predicted, expected = predictions[:, :-1].reshape(-1), labels[:, 1:].reshape(-1)
    scored = expected != IGNORED_LABEL
    predicted, expected = predicted[scored], expected[scored]
    return {
        "accuracy": accuracy(predicted, expected),
        "precision_macro": float(precision_recall_f1(predicted, expected, "macro")[0]),
    }


def perplexity(cross_entropy: float) -> float:
    """``exp`` of a mean cross-entropy in nats per token; infinite where that overflows a float."""
    return math.exp(cross_entropy) if cross_entropy < math.log(np.finfo(np.float64).max) else math.inf


__all__ = [
    "IGNORED_LABEL",
    "METRICS_DIR",
    "METRIC_NAMES",
    "compute_causal_lm_metrics",
    "compute_classification_metrics",
    "load_metric",
    "logits_to_predictions",
    "metric_path",
    "next_token_predictions",
    "perplexity",
]
