"""Local ``evaluate`` module: precision, macro-averaged by default.

Shipped inside fedgrow-hf so ``evaluate.load(<this file's directory>)`` works without the Hub.
"""

from fedgrow_hf.metrics import classification


class Precision(classification.AveragedScoreMetric):
    """Precision: true positives / predicted positives per class, then averaged (sklearn's definition)."""

    key = "precision"
