"""A party's side of a Fed-Grow round, shared by the plain ``ClientApp`` (:mod:`.client_app`) and the
SecAgg+ one (:mod:`.secure_aggregation`): which party a node is, its model and data, and one phase-1 round.
"""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path
from typing import Any

import torch
from flwr.app import Context

from ..data import trim_padding_collator
from ..metrics import compute_classification_metrics
from .config import FederationConfig
from .screening import PARTY_KEY, WEIGHT_KEY
from .task import build_party_model, party_datasets, training_arguments
from .trainer import FedGrowTrainer


@lru_cache(maxsize=4)
def load_party(config_json: str, party_id: int) -> tuple[Any, Any, Any]:
    """Model and data of a party, built once per process (all trainable state is reloaded each round)."""
    config = FederationConfig.from_dict(json.loads(config_json))
    train, evaluation = party_datasets(config, party_id)
    return build_party_model(config, party_id), train, evaluation


def party_id_of(context: Context) -> int:
    return int(context.node_config["partition-id"])


def train_party_round(
    cfg: FederationConfig, root: Path, party: int, global_state: dict[str, torch.Tensor], server_round: int
) -> tuple[dict[str, torch.Tensor], dict[str, int | float]]:
    """One phase-1 round of a party: the server's Global-LiGO in, local training, its Global-LiGO and
    metrics out."""
    model, train_set, eval_set = load_party(cfg.to_json(), party)
    party_dir = root / "parties" / f"party-{party}"
    trainer = FedGrowTrainer(
        model,
        training_arguments(cfg, party_dir / "trainer", cfg.federation.local_steps),
        party_dir=party_dir,
        train_dataset=train_set,
        eval_dataset=eval_set,
        data_collator=trim_padding_collator,
        compute_metrics=compute_classification_metrics,
        schedule_steps=cfg.federation.rounds * cfg.federation.local_steps,
    )
    trainer.begin_round(server_round)
    trainer.set_global_state(global_state)
    before = trainer.evaluate()
    metrics = trainer.train_round(server_round=server_round)
    after = trainer.evaluate()
    return trainer.get_global_state(), {
        PARTY_KEY: party,
        WEIGHT_KEY: len(train_set),
        "train_loss": metrics["train_loss"],
        "eval_loss_before": float(before["eval_loss"]),
        "eval_loss": float(after["eval_loss"]),
        "accuracy": float(after["eval_accuracy"]),
        "precision_macro": float(after["eval_precision_macro"]),
    }
