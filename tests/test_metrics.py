"""Local evaluate metric modules: offline loading and agreement with scikit-learn."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import accuracy_score, f1_score, precision_score
from transformers import EvalPrediction

from fedgrow_hf.metrics import compute_classification_metrics, load_metric, metric_path


def realistic_predictions(seed: int = 0, n: int = 300, classes: int = 4):
    """Labels plus ~70 %-accurate predictions from logits, with one class never predicted."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, classes, size=n)
    logits = rng.normal(size=(n, classes))
    logits[np.arange(n), labels] += 1.5
    logits[:, classes - 1] = -10.0  # the last class is never predicted: precision's zero-division path
    return logits, labels


def test_metrics_load_offline_by_path():
    # HF_HUB_OFFLINE=1 is set by conftest: loading must not need the Hub.
    for name in ("accuracy", "precision", "f1"):
        module = load_metric(name)
        assert module.name == name
        assert (metric_path(name) / f"{name}.py").is_file()


@pytest.mark.parametrize("average", ["macro", "micro", "weighted"])
def test_precision_and_f1_match_sklearn(average):
    logits, labels = realistic_predictions()
    preds = logits.argmax(-1)
    precision = load_metric("precision").compute(predictions=preds, references=labels, average=average)
    f1 = load_metric("f1").compute(predictions=preds, references=labels, average=average)
    assert precision["precision"] == pytest.approx(
        precision_score(labels, preds, average=average, zero_division=0)
    )
    assert f1["f1"] == pytest.approx(f1_score(labels, preds, average=average, zero_division=0))


def test_per_class_scores_match_sklearn():
    logits, labels = realistic_predictions(seed=1)
    preds = logits.argmax(-1)
    f1 = load_metric("f1").compute(predictions=preds, references=labels, average=None)["f1"]
    np.testing.assert_allclose(f1, f1_score(labels, preds, average=None, zero_division=0))


def test_accuracy_matches_sklearn_with_weights():
    logits, labels = realistic_predictions(seed=2)
    preds = logits.argmax(-1)
    weights = np.random.default_rng(3).uniform(size=labels.shape)
    result = load_metric("accuracy").compute(predictions=preds, references=labels, sample_weight=weights)
    assert result["accuracy"] == pytest.approx(accuracy_score(labels, preds, sample_weight=weights))


def test_compute_classification_metrics_takes_trainer_eval_prediction():
    logits, labels = realistic_predictions(seed=4)
    preds = logits.argmax(-1)
    # Trainer may pass a tuple of outputs led by the logits.
    scores = compute_classification_metrics(EvalPrediction(predictions=(logits, logits), label_ids=labels))
    assert scores == pytest.approx(
        {
            "accuracy": accuracy_score(labels, preds),
            "precision_macro": precision_score(labels, preds, average="macro", zero_division=0),
            "f1_macro": f1_score(labels, preds, average="macro", zero_division=0),
        }
    )


def test_bad_inputs_raise_clear_errors():
    with pytest.raises(ValueError, match="unknown metric 'recall'"):
        load_metric("recall")
    with pytest.raises(ValueError, match="average must be one of"):
        load_metric("f1").compute(predictions=[0, 1], references=[0, 1], average="samples")
