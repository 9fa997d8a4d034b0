"""The methods compared, each run through the project's own code: ``fedgrow simulate``'s federation
(Flower simulation engine, ``FedGrowTrainer``) or, for the non-federated baseline, ``transformers.Trainer``.

Every method starts from the same preset config, so parties, sources, partition, seeds, learning rates,
batch size and step counts are shared. Each method's run yields the same kind of records as the
federation's ``metrics.jsonl`` (one per evaluation point: ``phase``, ``round`` and per party its
held-out ``accuracy``/``precision_macro`` and ``bytes_up``/``bytes_down``).

* ``fed-grow``: Dual-LiGO, only the Global-LiGO is averaged (phase 1), then every party merges its
  grown model and fine-tunes it alone (phase 2, ``phase2="local"``).
* ``fed-scratch``: FedAvg of the full target model from one seeded random initialisation
  (``phase2="federated"``, ``finetune_init="random"``, no phase 1), for as many local steps per party
  as Fed-Grow's two phases together.
* ``independent``: every party grows its own source with plain LiGO and trains it alone for the same
  steps, then the same phase 2; nothing is sent.
* ``operator-fedavg``: every party has the same source (the preset's reference party's), the Local-LiGO
  is the frozen identity (intermediate shape = source shape), so the whole trainable operator is
  averaged: the upper reference that shares a common source and more of the operator.
"""

from __future__ import annotations

import copy
import json
import math
import shutil
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from transformers import Trainer, TrainerCallback

from ..federated.config import FederationConfig
from ..federated.task import (
    build_party_model,
    finetune_arguments,
    load_source,
    model_classes,
    party_datasets,
    party_shares,
    target_config,
    tokenizer_path,
    training_arguments,
)
from ..growth import grow
from ..metrics import compute_classification_metrics

METHOD_LABELS = {
    "fed-grow": "Fed-Grow",
    "fed-scratch": "Fed-Scratch",
    "independent": "Independent growth",
    "operator-fedavg": "FedAvg of whole operator (same source)",
}
METHODS = tuple(METHOD_LABELS)
SHAPE_KEYS = ("num_hidden_layers", "hidden_size", "num_attention_heads", "intermediate_size")


@dataclass
class MethodRun:
    """What one method's run measured."""

    method: str
    records: list[dict[str, Any]]
    wall_seconds: float
    trainable_parameters: dict[str, Any]
    shared_parameters: int
    steps_per_party: int
    notes: list[str] = field(default_factory=list)


def scratch_rounds(config: FederationConfig) -> int:
    """Fed-Scratch rounds giving each party as many local steps as Fed-Grow's phases 1 and 2."""
    fed = config.federation
    return fed.rounds + max(1, round(fed.finetune_steps / fed.local_steps))


def method_config(base: FederationConfig, method: str, work_dir: Path) -> FederationConfig:
    """The federation config of ``method``, derived from the preset's (everything else is shared)."""
    if method not in METHOD_LABELS:
        raise ValueError(f"unknown method {method!r}; methods: {', '.join(METHODS)}")
    config = copy.deepcopy(base)
    if config.model.family == "bert" and not config.data.tokenizer:
        config.data.tokenizer = tokenizer_path(base)  # derived configs may lose the party it came from
    fed = config.federation
    if method == "fed-scratch":
        fed.finetune_rounds, fed.finetune_steps = scratch_rounds(base), fed.local_steps
        fed.rounds, fed.phase2, fed.finetune_init = 0, "federated", "random"
    elif method == "operator-fedavg":
        source_dir = same_source(base, work_dir)
        config.parties = [type(party)(source=str(source_dir)) for party in base.parties]
        config.model.ligo = {**config.model.ligo, "train_local": False}
    elif method == "fed-grow":
        fed.phase2 = "local"
    config.validate()
    return config


def same_source(base: FederationConfig, work_dir: Path, reference_party: int = 0) -> Path:
    """Save the reference party's source once, for every party of the same-source reference.

    Its shape must be the intermediate shape: the Local-LiGO between equal shapes starts as the
    identity and stays frozen, so the Global-LiGO is then the whole trainable operator.
    """
    directory = work_dir / "same-source"
    if not (directory / "config.json").is_file():
        source = load_source(base, reference_party)
        shape = {key: getattr(source.config, key) for key in SHAPE_KEYS}
        wanted = {key: base.model.intermediate[key] for key in SHAPE_KEYS}
        if shape != wanted:
            raise ValueError(
                f"the same-source reference needs party {reference_party}'s source to have the intermediate "
                f"shape {wanted}, but it is {shape}"
            )
        source.save_pretrained(directory)
    return directory


def count_parameters(model: torch.nn.Module, trainable_only: bool = True) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


def target_parameters(config: FederationConfig) -> int:
    """Parameters of the full target model (what Fed-Scratch and phase 2 train)."""
    _, model_class = model_classes(config)
    with torch.device("meta"):
        return count_parameters(model_class(target_config(config)), trainable_only=False)


def dual_ligo_parameters(config: FederationConfig) -> tuple[dict[str, Any], int]:
    """Trainable parameters of every party's Dual-LiGO model in phase 1, and the shared (Global) part."""
    per_party, shared = [], 0
    for party in range(config.num_parties):
        model = build_party_model(config, party)
        per_party.append(count_parameters(model))
        shared = sum(p.numel() for p in model.base_model.operator.global_stage.parameters())
    return _parameter_summary(per_party, target_parameters(config)), shared


def _parameter_summary(phase1: list[int], phase2: int) -> dict[str, Any]:
    return {"phase1_per_party": phase1, "phase1_mean": sum(phase1) / len(phase1), "phase2": phase2}


def run_federated(
    config: FederationConfig, run_dir: Path, *, cpus_per_party: float = 1.0,
    on_round: Callable[[dict[str, Any]], None] | None = None,
) -> list[dict[str, Any]]:
    """Run the federation exactly as ``fedgrow simulate`` does; returns its ``metrics.jsonl`` records."""
    from ..federated.server_app import METRICS_FILE
    from ..federated.simulate import simulate

    simulate(config, run_dir, on_round=on_round, cpus_per_party=cpus_per_party)
    lines = (run_dir / METRICS_FILE).read_text(encoding="utf-8").splitlines()
    return [json.loads(line) for line in lines if line.strip()]


def run_method(
    base: FederationConfig, method: str, work_dir: Path, *, cpus_per_party: float = 1.0,
    on_round: Callable[[dict[str, Any]], None] | None = None,
) -> MethodRun:
    """Run ``method`` in ``work_dir/<method>`` (a fresh folder each time) and collect its figures."""
    config = method_config(base, method, work_dir)
    run_dir = (work_dir / method).resolve()
    if run_dir.exists():
        shutil.rmtree(run_dir)
    fed = base.federation
    steps = fed.rounds * fed.local_steps + fed.finetune_steps
    started = time.monotonic()
    if method == "independent":
        records, trainable = run_independent(config, run_dir, on_round=on_round)
        return MethodRun(method, records, time.monotonic() - started, trainable, 0, steps)
    records = run_federated(config, run_dir, cpus_per_party=cpus_per_party, on_round=on_round)
    wall = time.monotonic() - started
    if method == "fed-scratch":
        full = target_parameters(config)
        trainable = _parameter_summary([full] * config.num_parties, full)
        notes = ["round 1 also sends the initial Global-LiGO down (the federation's phase-2 message); the "
                 "random initial target is not sent: every party builds it from the shared seed"]
        return MethodRun(method, records, wall, trainable, full, config.federation.finetune_rounds * fed.local_steps,
                         notes)
    trainable, shared = dual_ligo_parameters(config)
    return MethodRun(method, records, wall, trainable, shared, steps)


class _EvaluateEvery(TrainerCallback):
    """Evaluate every ``every`` steps (like a federation round), keeping the metrics."""

    def __init__(self, every: int) -> None:
        self.every = every
        self.history: list[dict[str, float]] = []

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step % self.every == 0:
            control.should_evaluate = True
        return control

    def on_evaluate(self, args, state, control, metrics=None, **kwargs):
        self.history.append(dict(metrics or {}))


def run_independent(
    config: FederationConfig, run_dir: Path, *, on_round: Callable[[dict[str, Any]], None] | None = None
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Independent growth: per party, plain LiGO on its own source, trained alone, then phase 2 alone.

    Uses the federation's own building blocks (the party's source, data share and ``TrainingArguments``),
    with one LR schedule over all phase-1 steps, as ``FedGrowTrainer`` has across rounds.
    """
    fed = config.federation
    _, model_class = model_classes(config)
    per_round: list[dict[str, dict[str, Any]]] = [{} for _ in range(fed.rounds + 1)]
    trainable = []
    for party in range(config.num_parties):
        train_set, eval_set = party_datasets(config, party)
        source = load_source(config, party)
        torch.manual_seed(config.seed)  # the same task-head init as a Fed-Grow party
        model = grow(source, target_config(config), model_class=model_class, modules_to_save=["classifier"],
                     init_seed=config.seed, **config.model.ligo)
        trainable.append(count_parameters(model))
        party_dir = run_dir / "parties" / f"party-{party}"
        evaluations = _EvaluateEvery(fed.local_steps)
        Trainer(
            model, training_arguments(config, party_dir / "ligo", fed.rounds * fed.local_steps),
            train_dataset=train_set, eval_dataset=eval_set, compute_metrics=compute_classification_metrics,
            callbacks=[evaluations],
        ).train()
        grown = model.merge_and_unload(progressbar=False)
        finetune = Trainer(
            grown, finetune_arguments(config, party_dir / "finetune"),
            train_dataset=train_set, eval_dataset=eval_set, compute_metrics=compute_classification_metrics,
        )
        finetune.train()
        for index, metrics in enumerate([*evaluations.history[: fed.rounds], finetune.evaluate()]):
            per_round[index][str(party)] = {
                "accuracy": float(metrics["eval_accuracy"]),
                "precision_macro": float(metrics["eval_precision_macro"]),
                "eval_loss": float(metrics["eval_loss"]),
                "num-examples": len(train_set),
                "bytes_up": 0,
                "bytes_down": 0,
            }
    records = []
    for index, parties in enumerate(per_round):
        phase1 = index < fed.rounds
        record = {"phase": "independent" if phase1 else "finetune-local", "round": index + 1 if phase1 else 1,
                  "parties": parties, "accuracy": _mean([p["accuracy"] for p in parties.values()])}
        records.append(record)
        if on_round is not None:
            on_round(record)
    return records, _parameter_summary(trainable, target_parameters(config))


def _mean(values: list[float]) -> float:
    return sum(values) / len(values) if values else math.nan


def majority_class_reference(config: FederationConfig) -> dict[str, Any]:
    """Accuracy of always predicting the party's most frequent *training* label, on its held-out share.

    Under label skew this is far above chance: a method near it has learnt little beyond the label prior.
    """
    per_party = []
    for party in range(config.num_parties):
        train, held_out = party_shares(config, party)
        majority = Counter(train["label"]).most_common(1)[0][0]
        labels = held_out["label"]
        per_party.append(sum(label == majority for label in labels) / len(labels))
    return {"mean": float(sum(per_party) / len(per_party)), "per_party": per_party}
