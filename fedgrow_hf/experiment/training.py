"""How a party trains, from the experiment config: its ``TrainingArguments`` in both phases, the steps at
which phase 2 is evaluated, and where a run keeps a party's final model."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from transformers import TrainingArguments

from .config import FederationConfig
from .curves import evaluation_steps


def final_model_dir(run_dir: str | Path, party_id: int) -> Path:
    """Where a party keeps its model after phase 2 (the one its last metrics describe) in a run folder."""
    return Path(run_dir) / "parties" / f"party-{party_id}" / "grown"


def final_adapter_dir(run_dir: str | Path, party_id: int) -> Path:
    """Where a party keeps the LiGO adapter its final model was merged from (beside the model's folder, not in it:
    the adapter holds the party's private Local-LiGO, and the model's folder is what a user publishes)."""
    return Path(run_dir) / "parties" / f"party-{party_id}" / "ligo_adapter"


def training_options(config: FederationConfig) -> dict[str, Any]:
    """Every party's ``TrainingArguments`` options: these defaults overridden by ``[training]``.

    Evaluation runs without dropout or gradients, so its batch size changes the speed, not the figures;
    transformers' default of 8 made held-out evaluation most of a party's time on a GPU."""
    return {
        "per_device_train_batch_size": 16,
        "per_device_eval_batch_size": 64,
        "learning_rate": 1e-3,
        "report_to": [],
        "use_cpu": not torch.cuda.is_available(),
        "logging_strategy": "no",
        "disable_tqdm": True,
        **config.training,
    }


def training_arguments(config: FederationConfig, output_dir: str | Path, max_steps: int) -> TrainingArguments:
    """The party's ``TrainingArguments``: ``[training]`` with the round's step count and no own saving."""
    return TrainingArguments(
        output_dir=str(output_dir), max_steps=max_steps, save_strategy="no", eval_strategy="no",
        seed=config.seed, **training_options(config),
    )


def finetune_learning_rate(config: FederationConfig) -> float:
    """Phase 2's learning rate: ``finetune_learning_rate``, or (when 0) the operator's from ``[training]``.

    Phase 2 trains every weight of the grown model (or, for Fed-Scratch, of a random one), which
    usually wants a smaller learning rate than the few operator parameters of phase 1.
    """
    return config.federation.finetune_learning_rate or training_options(config)["learning_rate"]


def finetune_arguments(config: FederationConfig, output_dir: str | Path) -> TrainingArguments:
    """Phase 2's ``TrainingArguments``: ``finetune_steps`` at :func:`finetune_learning_rate`."""
    args = training_arguments(config, output_dir, config.federation.finetune_steps)
    args.learning_rate = finetune_learning_rate(config)
    return args


def finetune_eval_steps(config: FederationConfig) -> list[int]:
    """The steps of local phase 2 after which a party scores its held-out share: every ``local_steps``
    and the last step.

    One point per round's worth of steps, as phase 1 and a federated phase 2 have, so that learning
    curves of every method share one resolution (how soon a method reaches an accuracy is read from them).
    """
    return evaluation_steps(config.federation.finetune_steps, config.federation.local_steps)
