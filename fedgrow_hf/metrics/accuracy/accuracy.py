"""Local ``evaluate`` module: accuracy (same definition as the Hub's ``accuracy`` metric).

Shipped inside fedgrow-hf so ``evaluate.load(<this file's directory>)`` works without the Hub.
"""

from fedgrow_hf.metrics import classification


class Accuracy(classification.ClassificationMetric):
    """Accuracy: the fraction of predictions equal to their reference."""

    key = "accuracy"
    options_doc = "Optional sample_weight: list[float]."

    def _compute(self, predictions, references, sample_weight=None):
        return {"accuracy": classification.accuracy(predictions, references, sample_weight)}
