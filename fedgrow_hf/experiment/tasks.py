"""What a grown model is trained to do -- classify, or model language -- and what follows from it for
``Trainer``: how batches are made, how an evaluation is scored, which figures it reports.

The task follows from the architecture (:func:`task_of`): a decoder's role table grows its output
embedding (``*ForCausalLM``), an encoder gets a new classifier (or one grown from its sources' with
``LiGOConfig.grow_heads``). The recipe (``fedgrow grow``) and a
federation's parties train with the same :class:`Task`, so a decoder is scored alike in both.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import datasets
from transformers import PretrainedConfig, default_data_collator

from ..architectures import get_architecture_table
from ..data import trim_padding_collator
from ..hub import eval_metrics
from ..metrics import (
    compute_causal_lm_metrics,
    compute_classification_metrics,
    next_token_predictions,
    perplexity,
)


def causal_lm_figures(evaluation: dict[str, float]) -> dict[str, float]:
    """A decoder's figures from ``Trainer.evaluate``: its validation ``cross_entropy`` (the loss, nats per
    token), the ``perplexity`` it implies, and its ``next_token_accuracy``."""
    return {
        "cross_entropy": float(evaluation["eval_loss"]),
        "perplexity": perplexity(float(evaluation["eval_loss"])),
        "next_token_accuracy": float(evaluation["eval_accuracy"]),
    }


def _examples(dataset: datasets.Dataset) -> str:
    return "examples"


def _blocks(dataset: datasets.Dataset) -> str:
    return f"blocks of {len(dataset[0]['input_ids'])} tokens"


@dataclass(frozen=True)
class Task:
    """What training differs in between a classifier and a decoder: what the operator phase trains beside
    the operator, how ``Trainer`` batches and scores, which figures an evaluation reports (the recipe's) and
    what a dataset's rows are called in a card."""

    operator_trains: str
    data_collator: Callable[[list[dict[str, Any]]], dict[str, Any]]
    compute_metrics: Callable[[Any], dict[str, float]]
    figures: Callable[[dict[str, float]], dict[str, float]] = eval_metrics
    preprocess_logits_for_metrics: Callable[[Any, Any], Any] | None = None
    rows: Callable[[datasets.Dataset], str] = _examples

    def operator_phase_trains(self, grown_heads: Sequence[str] | None = None) -> str:
        """What the operator phase trains, as a card states it: ``operator_trains``, unless the task heads are grown
        from the sources' (``LiGOConfig.grown_heads``), which makes them the operator's output and leaves no new
        head to train beside it."""
        if not grown_heads:
            return self.operator_trains
        return f"the LiGO operator (the {', '.join(grown_heads)} grown through it from the sources')"

    def trainer_options(self) -> dict[str, Any]:
        """The ``Trainer`` keyword arguments that batch and score this task (every evaluation scores
        ``accuracy`` and ``precision_macro``)."""
        return {"data_collator": self.data_collator, "compute_metrics": self.compute_metrics,
                "preprocess_logits_for_metrics": self.preprocess_logits_for_metrics}


# Padding columns no row of a batch uses are cut; the scores are accuracy, macro precision and macro F1.
CLASSIFICATION = Task("the LiGO operator and the new classifier", trim_padding_collator, compute_classification_metrics)
# Packed blocks have no padding to cut; Trainer keeps each position's predicted token, not its logits, and
# scores next-token accuracy and macro precision.
CAUSAL_LM = Task("the LiGO operator", default_data_collator, compute_causal_lm_metrics, causal_lm_figures,
                 next_token_predictions, _blocks)


def task_of(config: PretrainedConfig) -> Task:
    """The task of a model of ``config``: a causal language model for a decoder, else a classifier."""
    return CAUSAL_LM if get_architecture_table(config).causal_lm else CLASSIFICATION
