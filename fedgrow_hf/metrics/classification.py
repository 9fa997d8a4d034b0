"""Pure-numpy classification scores shared by the local ``evaluate`` metric scripts.

Why numpy and not scikit-learn: scikit-learn is only a dev dependency, and the metric scripts must load
for every user. The definitions follow ``sklearn.metrics`` exactly (labels = union of the classes seen in
references and predictions; a class that is never predicted has precision 0, like sklearn's
``zero_division="warn"``), and tests/test_metrics.py checks them against sklearn.
"""

from __future__ import annotations

from collections.abc import Sequence

import datasets
import evaluate
import numpy as np

AVERAGES = ("macro", "micro", "weighted", None)


def _as_labels(values: Sequence[int] | np.ndarray, name: str) -> np.ndarray:
    array = np.asarray(values)
    if array.ndim != 1:
        raise ValueError(f"{name} must be a 1-D sequence of class ids, got shape {array.shape}")
    return array


def accuracy(predictions: Sequence[int], references: Sequence[int], sample_weight=None) -> float:
    """Fraction of predictions equal to the reference (weighted if ``sample_weight`` is given)."""
    preds, refs = _as_labels(predictions, "predictions"), _as_labels(references, "references")
    if preds.shape != refs.shape:
        raise ValueError(f"predictions ({preds.shape[0]}) and references ({refs.shape[0]}) differ in length")
    if preds.size == 0:
        raise ValueError("accuracy of an empty set of predictions is undefined")
    return float(np.average(preds == refs, weights=sample_weight))


def precision_recall_f1(
    predictions: Sequence[int], references: Sequence[int], average: str | None = "macro"
) -> tuple[np.ndarray | float, np.ndarray | float, np.ndarray | float]:
    """Precision, recall and F1 per class, then averaged (``average=None`` keeps the per-class arrays).

    Classes are the sorted union of those present in ``references`` and ``predictions``. Divisions by
    zero (a class never predicted, or never present) give 0, as scikit-learn does by default.
    """
    if average not in AVERAGES:
        raise ValueError(f"average must be one of {AVERAGES}, got {average!r}")
    preds, refs = _as_labels(predictions, "predictions"), _as_labels(references, "references")
    if preds.shape != refs.shape:
        raise ValueError(f"predictions ({preds.shape[0]}) and references ({refs.shape[0]}) differ in length")
    classes = np.union1d(preds, refs)
    true_pos = np.array([np.sum((preds == c) & (refs == c)) for c in classes], dtype=np.float64)
    pred_count = np.array([np.sum(preds == c) for c in classes], dtype=np.float64)
    true_count = np.array([np.sum(refs == c) for c in classes], dtype=np.float64)
    if average == "micro":
        true_pos, pred_count, true_count = (
            true_pos.sum(keepdims=True),
            pred_count.sum(keepdims=True),
            true_count.sum(keepdims=True),
        )
    precision = np.divide(true_pos, pred_count, out=np.zeros_like(true_pos), where=pred_count > 0)
    recall = np.divide(true_pos, true_count, out=np.zeros_like(true_pos), where=true_count > 0)
    denominator = precision + recall
    f1 = np.divide(2 * precision * recall, denominator, out=np.zeros_like(true_pos), where=denominator > 0)
    if average is None:
        return precision, recall, f1
    weights = true_count if average == "weighted" else None
    if weights is not None and weights.sum() == 0:
        return 0.0, 0.0, 0.0
    return tuple(float(np.average(score, weights=weights)) for score in (precision, recall, f1))


class ClassificationMetric(evaluate.Metric):
    """Base of the local metric scripts: integer class ids in, one named score out.

    A script subclasses it with ``key`` (the score's name) and a docstring. Scripts import this
    *module*, not the classes: ``evaluate`` takes the first metric class in a script's namespace.
    """

    key: str = ""
    options_doc: str = ""

    def _info(self) -> evaluate.MetricInfo:
        return evaluate.MetricInfo(
            module_name=self.key,
            description=self.__doc__ or self.key,
            citation="",
            inputs_description=(
                "predictions: list[int] predicted class ids; references: list[int] true class ids. "
                f"{self.options_doc} Returns {{'{self.key}': score}}."
            ),
            features=datasets.Features(
                {"predictions": datasets.Value("int64"), "references": datasets.Value("int64")}
            ),
            reference_urls=["https://scikit-learn.org/stable/modules/model_evaluation.html"],
        )


class AveragedScoreMetric(ClassificationMetric):
    """Per-class precision or F1 (``key``), averaged as asked (macro by default)."""

    options_doc = "Optional average: 'macro' (default), 'micro', 'weighted' or None (a per-class list)."

    def _compute(self, predictions, references, average="macro"):
        precision, _, f1 = precision_recall_f1(predictions, references, average)
        score = {"precision": precision, "f1": f1}[self.key]
        return {self.key: score.tolist() if average is None else score}
