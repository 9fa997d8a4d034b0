"""Local ``evaluate`` module: f1, macro-averaged by default.

Shipped inside fedgrow-hf so ``evaluate.load(<this file's directory>)`` works without the Hub.
"""

from fedgrow_hf.metrics import classification


class F1(classification.AveragedScoreMetric):
    """F1: harmonic mean of precision and recall per class, then averaged (sklearn's definition)."""

    key = "f1"
