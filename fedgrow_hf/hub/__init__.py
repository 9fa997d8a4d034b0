"""Hub workflows for grown models: model cards from the run's facts, and pushing models or adapters."""

from .card import (
    FederationFacts,
    TrainingFacts,
    TrainingPhase,
    build_model_card,
    eval_metrics,
    read_results,
)

__all__ = [
    "FederationFacts",
    "TrainingFacts",
    "TrainingPhase",
    "build_model_card",
    "eval_metrics",
    "read_results",
]
