"""Classification metrics as local ``evaluate`` modules, so evaluation never needs the Hub.

``evaluate.load("accuracy")`` downloads a script from the Hub; these modules ship inside the package
(``fedgrow_hf/metrics/<name>/<name>.py``, included as package data) and are loaded by path.
``compute_classification_metrics`` is ready for ``transformers.Trainer(compute_metrics=...)``.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path

import numpy as np

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


__all__ = [
    "METRICS_DIR",
    "METRIC_NAMES",
    "compute_classification_metrics",
    "load_metric",
    "logits_to_predictions",
    "metric_path",
]
