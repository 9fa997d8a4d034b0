"""The methods compared, each run through the project's own code: ``fedgrow simulate``'s federation
(Flower simulation engine, ``FedGrowTrainer``) or, for the non-federated methods, ``transformers.Trainer``.

Every method starts from the same preset config, so parties, sources, partition, seeds, learning rates,
batch size and step counts are shared. Each method's run yields the same kind of records as the
federation's ``metrics.jsonl`` (one per evaluation point: ``phase``, ``round``, ``steps`` (local steps
per party so far) and per party its held-out ``accuracy``/``precision_macro`` and
``bytes_up``/``bytes_down``), and every party's final model is scored on the common test split.
Every method is evaluated after every ``local_steps`` of training (a round's worth) and after its last
step, local phase 2 included, so that all learning curves share one resolution.

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
* ``own-source``: every party fine-tunes its own source under a fresh classification head, alone, for
  Fed-Grow's phase-1 + phase-2 steps at the full-model learning rate: what a party would do without
  growing anything.
Methods of the operator-only regime (``phase2="merge"``, the Fed-Grow paper's: many operator rounds, the grown
model evaluated as the operator generates it and merged once at the end; the LiGO-regime methods above
follow the preset's ``phase2`` too):

* ``fed-grow-dense``, ``independent-dense``: the same with ``width_structure="dense"`` (full width matrices,
  the paper's operator) instead of the default head-structured Kronecker factors.
* ``fed-grow-local-frozen``: Fed-Grow whose Local-LiGO trains in round 1 only (the authors' code fixes each
  party's grown intermediate after round 1).
* ``fed-grow-shared-intermediate``: what the authors' code does: after round 1 every party sends its grown
  intermediate model once, the server averages them, and every party then trains the Global-LiGO over that
  one average. It shares a model.
* ``fed-grow-shared-head``: Fed-Grow whose parties also average their task heads every round, as the authors'
  code averages a party's whole state (``share_head``): it shares the classifier, which strict Fed-Grow keeps
  private.
* In this regime ``independent`` is the very Dual-LiGO model of a Fed-Grow party trained alone for the same
  steps (the authors' ``noagg``): what separates the two is the averaging alone.

* ``central-ligo``: one plain-LiGO growth of the reference party's source, trained on the pooled
  training data of all parties for (number of parties) x the steps of one party, then the same phase 2
  on the pooled data, also scaled: every training example any party holds is seen as often as in the
  federated methods. An upper reference: it needs the parties' raw data in one place.
"""

from __future__ import annotations

import copy
import math
import shutil
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import datasets
import torch
from transformers import PreTrainedModel, Trainer, TrainerCallback

from ..architectures import get_architecture_table
from ..data import trim_padding_collator
from ..experiment.config import FederationConfig, FederationSettings
from ..experiment.curves import EvaluateAt, evaluation_steps
from ..experiment.data import party_datasets, party_shares, tokenizer_path
from ..experiment.models import (
    NO_DROPOUT,
    grow_classifier,
    initial_head_state,
    model_classes,
    target_config,
)
from ..experiment.parties import build_party_model, load_source
from ..experiment.stream import StreamTrainer
from ..experiment.training import (
    final_adapter_dir,
    final_model_dir,
    finetune_learning_rate,
    training_arguments,
    training_options,
)
from ..federated.engine import SimulationEngine
from ..metrics import compute_classification_metrics
from ..recipe import operator_then_model

METHOD_LABELS = {
    "fed-grow": "Fed-Grow",
    "fed-grow-dense": "Fed-Grow, dense operator",
    "fed-grow-local-frozen": "Fed-Grow, Local-LiGO fixed after round 1",
    "fed-grow-shared-intermediate": "Fed-Grow sharing the intermediate model (authors' code)",
    "fed-grow-shared-head": "Fed-Grow sharing the task head (authors' code)",
    "fed-scratch": "Fed-Scratch",
    "independent": "Independent growth",
    "independent-dense": "Independent growth, dense operator",
    "operator-fedavg": "FedAvg of whole operator (same source)",
    "own-source": "Own source, fine-tuned",
    "central-ligo": "Central LiGO on pooled data",
}
# the comparison of the LiGO regime (a short operator phase, then fine-tuning): every preset's default
METHODS = ("fed-grow", "fed-scratch", "independent", "operator-fedavg", "own-source", "central-ligo")
ALL_METHODS = tuple(METHOD_LABELS)
DENSE = {"fed-grow-dense": "fed-grow", "independent-dense": "independent"}  # variant -> the method it varies
OWN_SOURCE = "own-source"  # the one method that trains the sources' shapes, not the target's
FED_SCRATCH = "fed-scratch"  # the one method of the operator-only regime that trains the target's whole shape
REFERENCE_PARTY = 0  # the preset's largest source, of the intermediate shape
TEST_BATCH_SIZE = 64  # scoring only: no dropout, so the batch size changes the speed, not the figures
SHAPE_KEYS = ("num_hidden_layers", "hidden_size", "num_attention_heads", "intermediate_size")
LABEL_FIELDS = ("num_labels", "id2label", "label2id", "architectures")
CENTRAL_NOTE = ("the parties' raw training data are pooled in one place (not a federated method): it sends "
                "data, not parameters, so no bytes are counted; one model serves every party, so its per-party "
                "common-test figures are equal and its curve's steps are its steps / number of parties")


@dataclass
class MethodRun:
    """What one method's run with one seed measured."""

    method: str
    seed: int
    records: list[dict[str, Any]]
    test: list[dict[str, float]]  # per party: its final model's common-test accuracy and macro-F1
    wall_seconds: float
    cpu_seconds: float  # CPU time of this process (every thread): a machine shared with other jobs inflates it less
    trainable_parameters: dict[str, Any]
    shared_parameters: int
    steps_per_party: int
    notes: list[str] = field(default_factory=list)


def trains_in_phase2(config: FederationConfig) -> bool:
    """Whether phase 2 trains (LiGO's regime) or not (the operator-only regime, or phase 1 alone)."""
    return config.federation.phase2 in ("local", "federated")


def scratch_rounds(config: FederationConfig) -> int:
    """Fed-Scratch rounds giving each party as many local steps as Fed-Grow's phases 1 and 2."""
    fed = config.federation
    return fed.rounds + (max(1, round(fed.finetune_steps / fed.local_steps)) if trains_in_phase2(config) else 0)


def steps_per_party(config: FederationConfig) -> int:
    """Local steps per party of Fed-Grow's two phases: the budget every method gets."""
    fed = config.federation
    return fed.rounds * fed.local_steps + (fed.finetune_steps if trains_in_phase2(config) else 0)


def method_config(base: FederationConfig, method: str, work_dir: Path) -> FederationConfig:
    """The federation config of ``method``, derived from the preset's (everything else is shared)."""
    if method not in METHOD_LABELS:
        raise ValueError(f"unknown method {method!r}; methods: {', '.join(ALL_METHODS)}")
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
    elif method.startswith("fed-grow") and fed.phase2 not in ("local", "merge"):
        fed.phase2 = "local"
    if method in DENSE:
        config.model.ligo = {**config.model.ligo, "width_structure": "dense"}
    if method == "fed-grow-local-frozen":
        fed.local_ligo_rounds = 1
    if method == "fed-grow-shared-intermediate":
        fed.share_intermediate = True
    if method == "fed-grow-shared-head":
        fed.share_head = True
    config.validate()
    return config


def same_source(base: FederationConfig, work_dir: Path, reference_party: int = REFERENCE_PARTY) -> Path:
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
    """Trainable parameters of every party's Dual-LiGO model in phase 1, and the shared part (the Global-LiGO, and
    with ``share_head`` the task head)."""
    per_party, shared = [], 0
    for party in range(config.num_parties):
        model = build_party_model(config, party)
        per_party.append(count_parameters(model))
        shared = sum(p.numel() for p in model.base_model.global_parameters())
    shared += sum(value.numel() for value in initial_head_state(config).values())
    return _parameter_summary(per_party, target_parameters(config)), shared


def _parameter_summary(phase1: list[int], phase2: int) -> dict[str, Any]:
    return {"phase1_per_party": phase1, "phase1_mean": sum(phase1) / len(phase1), "phase2": phase2}


def test_scores(model: torch.nn.Module, config: FederationConfig, test_set: datasets.Dataset,
                output_dir: Path) -> dict[str, float]:
    """Accuracy and macro-F1 of ``model`` on the common test set (``experiment.data.common_test_set``)."""
    args = training_arguments(config, output_dir, 1)
    args.per_device_eval_batch_size = TEST_BATCH_SIZE
    trainer = Trainer(model, args, data_collator=trim_padding_collator, compute_metrics=compute_classification_metrics)
    metrics = trainer.evaluate(test_set, metric_key_prefix="test")
    return {name: float(metrics[f"test_{name}"]) for name in ("accuracy", "f1_macro", "precision_macro")}


def run_federated(
    config: FederationConfig, run_dir: Path, *, engine: str | SimulationEngine = "ray",
    on_round: Callable[[dict[str, Any]], None] | None = None, resume: bool = False,
) -> tuple[list[dict[str, Any]], int | None]:
    """Run the federation exactly as ``fedgrow simulate`` does, in a fresh ``run_dir`` or, with ``resume``,
    from the checkpoint an interrupted run of the same config left there during phase 1 (a federation of the
    paper's protocol takes a quarter of an hour on 2 cores: a kill should cost one round, not the run).

    Returns its ``metrics.jsonl`` records, each with the local steps per party it was measured after
    (``steps``), and the round it resumed after (None for a fresh run)."""
    # needs Flower: imported when a federation runs
    from ..federated.simulate import resumable_round, run_records, simulate

    resumed = resumable_round(run_dir, config) if resume else None
    if resumed is not None and resumed >= config.federation.rounds:
        resumed = None  # killed in phase 2 or while scoring, which deletes each scored model: run it again whole
    if resumed is None and run_dir.exists():
        shutil.rmtree(run_dir)
    simulate(config, run_dir, on_round=on_round, engine=engine, resume=resumed is not None)
    records = _with_exchanges_folded(run_records(run_dir))
    return [point for record in records for point in _evaluation_points(record, config.federation)], resumed


def _with_exchanges_folded(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The records with each party's upload of an exchange without figures (``share_intermediate``'s) added
    to its upload in the next record, so that every byte sent lies on the curve."""
    folded, carried = [], {}
    for record in records:
        if record["phase"] == "intermediate":
            carried = {name: party["bytes_up"] for name, party in record["parties"].items()}
            continue
        for name, up in carried.items():
            if name in record["parties"]:
                record["parties"][name]["bytes_up"] += up
        carried = {}
        folded.append(record)
    return folded


def _evaluation_points(record: dict[str, Any], fed: FederationSettings) -> list[dict[str, Any]]:
    """A federation record as records of evaluation points, each with the local steps per party it was
    measured after (phase 2 follows all of phase 1).

    A local phase-2 record holds each party's learning curve: it becomes one record per curve point,
    the bytes of its message counted at the first (the Global-LiGO comes down before fine-tuning).
    """
    phase1 = fed.rounds * fed.local_steps
    if record["phase"] == "operator":
        return [{**record, "steps": record["round"] * fed.local_steps}]
    if record["phase"] == "finetune-merge":  # the merged models: the same steps as the last round
        return [{**record, "steps": phase1}]
    if record["phase"] == "finetune-federated":
        return [{**record, "steps": phase1 + record["round"] * fed.finetune_steps}]
    parties = record["parties"]
    curves = {name: metrics["curve"] for name, metrics in parties.items()}
    return [
        _record("finetune-local", index + 1, phase1 + points[0]["steps"], {
            name: {
                "num-examples": parties[name]["num-examples"],
                **{key: value for key, value in point.items() if key != "steps"},
                "bytes_up": parties[name]["bytes_up"] if index == 0 else 0,
                "bytes_down": parties[name]["bytes_down"] if index == 0 else 0,
            } for name, point in zip(curves, points)
        })
        for index, points in enumerate(zip(*curves.values(), strict=True))
    ]


class FixLocalAfter(TrainerCallback):
    """Stop training a Dual-LiGO model's Local-LiGO after ``steps`` steps (``local_ligo_rounds`` rounds' worth):
    from then on its parameters get no gradient, so the optimizer leaves them as they are."""

    def __init__(self, model: Any, steps: int) -> None:
        self.model, self.steps = model, steps

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step == self.steps:
            self.model.base_model.train_local_stages(False)
        return control


def train_alone(
    model: torch.nn.Module, config: FederationConfig, train_set: datasets.Dataset,
    eval_sets: dict[int, datasets.Dataset], output_dir: Path, *, steps: int, learning_rate: float,
    every: int | None, callbacks: Sequence[TrainerCallback] = (),
) -> list[tuple[int, dict[str, dict[str, float]]]]:
    """Train ``model`` with ``transformers.Trainer`` for ``steps`` steps (one LR schedule, the party's
    ``TrainingArguments`` at ``learning_rate``, the batches of the stream a federated party trains on),
    evaluating every ``every`` steps (``None``: never) and at the end on each party's held-out share in
    ``eval_sets``. Returns ``(step, {party: metrics})`` per evaluation."""
    args = training_arguments(config, output_dir, steps)
    args.learning_rate = learning_rate
    evaluations = EvaluateAt(evaluation_steps(steps, every or steps))
    StreamTrainer(
        model, args, train_dataset=train_set, eval_dataset={str(party): data for party, data in eval_sets.items()},
        data_collator=trim_padding_collator, compute_metrics=compute_classification_metrics,
        callbacks=[evaluations, *callbacks],
    ).train()
    return [
        (step, {str(party): {
            "accuracy": float(metrics[f"eval_{party}_accuracy"]),
            "precision_macro": float(metrics[f"eval_{party}_precision_macro"]),
            "eval_loss": float(metrics[f"eval_{party}_loss"]),
            "num-examples": len(train_set),
            "bytes_up": 0,
            "bytes_down": 0,
        } for party in eval_sets})
        for step, metrics in sorted(evaluations.history.items())
    ]


def grow_and_train_alone(
    config: FederationConfig, source: PreTrainedModel, train_set: datasets.Dataset,
    eval_sets: dict[int, datasets.Dataset], run_dir: Path, *, scale: int, phase: str, curve: bool = True,
) -> tuple[list[dict[str, Any]], torch.nn.Module, int]:
    """Plain LiGO from ``source`` to the target, trained alone, then merged and fine-tuned alone: Fed-Grow's
    phases without the federation, each with ``scale`` x its steps. Returns the records (steps divided by
    ``scale``), the final model and the operator's trainable parameters. Evaluated every ``local_steps``
    (a learning curve) or, without ``curve``, only at the end of each phase."""
    fed = config.federation
    every = fed.local_steps * scale if curve else None
    # seeded by the config: the same task-head init as a Fed-Grow party
    model = grow_classifier(source, target_config(config), seed=config.seed, **config.model.ligo)
    trainable = count_parameters(model)

    def train_operator(operator_model: torch.nn.Module) -> list[tuple[int, dict[str, dict[str, float]]]]:
        return train_alone(operator_model, config, train_set, eval_sets, run_dir / "ligo",
                           steps=fed.rounds * fed.local_steps * scale,
                           learning_rate=training_options(config)["learning_rate"], every=every)

    def train_grown(grown_model: torch.nn.Module) -> list[tuple[int, dict[str, dict[str, float]]]]:
        return train_alone(grown_model, config, train_set, eval_sets, run_dir / "finetune",
                           steps=fed.finetune_steps * scale, learning_rate=finetune_learning_rate(config), every=every)

    grown, phase1, phase2 = operator_then_model(
        model, train_operator, train_grown if trains_in_phase2(config) else None, merge=True)
    phase2 = phase2 or []
    records = [_record(phase, index, step // scale, parties) for index, (step, parties) in enumerate(phase1, start=1)]
    records += [_record("finetune-local", index, fed.rounds * fed.local_steps + step // scale, parties)
                for index, (step, parties) in enumerate(phase2, start=1)]
    return records, grown, trainable


def _record(phase: str, round_: int, steps: int, parties: dict[str, dict[str, Any]]) -> dict[str, Any]:
    return {"phase": phase, "round": round_, "steps": steps, "parties": parties,
            "accuracy": _mean([p["accuracy"] for p in parties.values()])}


def _merge_parties(per_party: list[list[dict[str, Any]]]) -> list[dict[str, Any]]:
    """Records of parties trained one after another -> one record per evaluation point, all parties."""
    merged = []
    for points in zip(*per_party):
        parties = {name: metrics for point in points for name, metrics in point["parties"].items()}
        merged.append(_record(points[0]["phase"], points[0]["round"], points[0]["steps"], parties))
    return merged


def _announce(records: list[dict[str, Any]], on_round: Callable[[dict[str, Any]], None] | None) -> None:
    """Pass an in-process run's records to ``on_round`` once it is done (a federation does it per round)."""
    if on_round is not None:
        for record in records:
            on_round(record)


def run_independent(
    config: FederationConfig, run_dir: Path, on_round: Callable[[dict[str, Any]], None] | None = None
) -> tuple[list[dict[str, Any]], list[torch.nn.Module], dict[str, Any]]:
    """Independent growth: per party, plain LiGO on its own source, trained alone, then phase 2 alone.

    Uses the federation's own building blocks (the party's source, data share and ``TrainingArguments``),
    with one LR schedule over all phase-1 steps, as ``FedGrowTrainer`` has across rounds. In the
    operator-only regime a party grows with its Fed-Grow model (Dual-LiGO, :func:`grow_dual_alone`).
    """
    per_party, models, trainable = [], [], []
    for party in range(config.num_parties):
        train_set, eval_set = party_datasets(config, party)
        party_dir = run_dir / "parties" / f"party-{party}"
        if trains_in_phase2(config):
            records, model, operator = grow_and_train_alone(
                config, load_source(config, party), train_set, {party: eval_set}, party_dir, scale=1,
                phase="independent",
            )
        else:
            records, model, operator = grow_dual_alone(config, party, train_set, eval_set, party_dir)
        per_party.append(records)
        models.append(model)
        trainable.append(operator)
    records = _merge_parties(per_party)
    _announce(records, on_round)
    return records, models, _parameter_summary(trainable, target_parameters(config))


def grow_dual_alone(
    config: FederationConfig, party: int, train_set: datasets.Dataset, eval_set: datasets.Dataset, run_dir: Path,
    curve: bool = True,
) -> tuple[list[dict[str, Any]], torch.nn.Module, int]:
    """A Fed-Grow party's own Dual-LiGO model (the same build, seeds and Local-LiGO schedule) trained alone for
    the federation's ``rounds`` x ``local_steps`` at the operator's rate, evaluated every ``local_steps`` (without
    ``curve``: at the end only), then merged once: the operator-only regime without the averaging. Returns the
    records, the merged model and the trainable parameters."""
    fed = config.federation
    model = build_party_model(config, party)
    trainable = count_parameters(model)
    fixing = [FixLocalAfter(model, fed.local_ligo_rounds * fed.local_steps)] if fed.local_ligo_rounds else []
    points = train_alone(model, config, train_set, {party: eval_set}, run_dir / "ligo", steps=fed.rounds * fed.local_steps,
                         learning_rate=training_options(config)["learning_rate"],
                         every=fed.local_steps if curve else None, callbacks=fixing)
    records = [_record("independent", index, step, parties) for index, (step, parties) in enumerate(points, start=1)]
    return records, model.merge_and_unload(progressbar=False), trainable


def train_scratch_alone(
    config: FederationConfig, party: int, train_set: datasets.Dataset, eval_set: datasets.Dataset, run_dir: Path,
    curve: bool = True,
) -> list[dict[str, Any]]:
    """A Fed-Scratch party alone: the seeded random target every Fed-Scratch party starts from, trained for the
    step budget every method gets (:func:`steps_per_party`) at the full-model rate, evaluated every
    ``local_steps`` (without ``curve``: at the end only). Returns the records."""
    _, model_class = model_classes(config)
    torch.manual_seed(config.seed)  # the start every Fed-Scratch party builds
    model = model_class(target_config(config))
    points = train_alone(model, config, train_set, {party: eval_set}, run_dir, steps=steps_per_party(config),
                         learning_rate=finetune_learning_rate(config),
                         every=config.federation.local_steps if curve else None)
    return [_record("scratch-alone", index, step, parties) for index, (step, parties) in enumerate(points, start=1)]


def own_source_model(config: FederationConfig, party: int) -> PreTrainedModel:
    """The party's source under a fresh classification head for the task (seeded as every method's head),
    without dropout like every grown model; a ViT source's own pretraining head is dropped."""
    source = load_source(config, party)
    _, model_class = model_classes(config)
    settings = {key: value for key, value in source.config.to_dict().items() if key not in LABEL_FIELDS}
    torch.manual_seed(config.seed)
    model = model_class(type(source.config)(**{**settings, **NO_DROPOUT, "num_labels": config.model.num_labels}))
    encoder = getattr(source, source.base_model_prefix, source)  # ViT sources are classifiers: take their encoder
    getattr(model, model.base_model_prefix).load_state_dict(encoder.state_dict())
    if config.model.grows_heads:  # the party's own classifier keeps its trained head, as its grown model grows it
        for head in get_architecture_table(source.config).head_roles:
            model.get_submodule(head).load_state_dict(source.get_submodule(head).state_dict())
    return model


def fine_tune_own_source(
    config: FederationConfig, party: int, train_set: datasets.Dataset, eval_set: datasets.Dataset, output_dir: Path,
    curve: bool = True,
) -> tuple[list[dict[str, Any]], PreTrainedModel]:
    """Own-source fine-tuning of one party: Fed-Grow's phase-1 + phase-2 steps per party in one run at the
    full-model learning rate, evaluated every ``local_steps`` (like a round) and at the end; without ``curve``
    only at the end."""
    model = own_source_model(config, party)
    points = train_alone(model, config, train_set, {party: eval_set}, output_dir, steps=steps_per_party(config),
                         learning_rate=finetune_learning_rate(config),
                         every=config.federation.local_steps if curve else None)
    records = [_record("own-source", index, step, parties) for index, (step, parties) in enumerate(points, start=1)]
    return records, model


def run_own_source(
    config: FederationConfig, run_dir: Path, on_round: Callable[[dict[str, Any]], None] | None = None
) -> tuple[list[dict[str, Any]], list[torch.nn.Module], dict[str, Any]]:
    """Own-source fine-tuning of every party, one after another."""
    per_party, models = [], []
    for party in range(config.num_parties):
        train_set, eval_set = party_datasets(config, party)
        records, model = fine_tune_own_source(config, party, train_set, eval_set,
                                              run_dir / "parties" / f"party-{party}")
        per_party.append(records)
        models.append(model)
    records = _merge_parties(per_party)
    _announce(records, on_round)
    sizes = [count_parameters(model) for model in models]
    return records, models, _parameter_summary(sizes, round(_mean(sizes)))


def run_central_ligo(
    config: FederationConfig, run_dir: Path, on_round: Callable[[dict[str, Any]], None] | None = None
) -> tuple[list[dict[str, Any]], list[torch.nn.Module], dict[str, Any]]:
    """Central LiGO: the reference party's source grown once with plain LiGO on every party's training
    share pooled, for number-of-parties x the steps (both phases), evaluated on each party's held-out share."""
    shares = [party_datasets(config, party) for party in range(config.num_parties)]
    pooled = datasets.concatenate_datasets([train for train, _ in shares])
    held_out = {party: party_held_out for party, (_, party_held_out) in enumerate(shares)}
    records, model, operator = grow_and_train_alone(config, load_source(config, REFERENCE_PARTY), pooled, held_out,
                                               run_dir / "central", scale=config.num_parties, phase="central-ligo")
    _announce(records, on_round)
    return records, [model] * config.num_parties, _parameter_summary([operator] * config.num_parties,
                                                                       target_parameters(config))


IN_PROCESS: dict[str, Callable[..., tuple[list[dict[str, Any]], list[torch.nn.Module], dict[str, Any]]]] = {
    "independent": run_independent,
    "independent-dense": run_independent,
    "own-source": run_own_source,
    "central-ligo": run_central_ligo,
}


def run_method(
    base: FederationConfig, method: str, work_dir: Path, test_set: datasets.Dataset, *,
    keep_models: bool = False, engine: str | SimulationEngine = "ray",
    on_round: Callable[[dict[str, Any]], None] | None = None, resume: bool = False,
) -> MethodRun:
    """Run ``method`` with ``base.seed`` in ``work_dir/<method>`` (a fresh folder, or with ``resume`` a
    federation's interrupted run of the same config continued: ``run_federated``), score every party's final
    model on ``test_set`` and collect the figures.

    With ``keep_models``, each party's final model stays in ``work_dir/<method>/parties/party-<id>/grown``;
    otherwise it is deleted once scored (a BERT-Base target is 0.4 GB per party and seed).
    """
    config = method_config(base, method, work_dir)
    run_dir = (work_dir / method).resolve()
    steps, shared, notes = steps_per_party(base), 0, []
    started, cpu_started = time.monotonic(), time.process_time()
    earlier = earlier_cpu = 0.0
    if method in IN_PROCESS:
        if run_dir.exists():
            shutil.rmtree(run_dir)
        records, models, trainable = IN_PROCESS[method](config, run_dir, on_round)
        test = _score_models(models, config, test_set, run_dir, keep_models)
    else:
        records, resumed = run_federated(config, run_dir, engine=engine, on_round=on_round, resume=resume)
        if resumed is not None:
            earlier, earlier_cpu, note = earlier_sittings(records, resumed)
            notes.append(note)
        test = _score_saved_models(config, test_set, run_dir, keep_models)
    wall, cpu = time.monotonic() - started + earlier, time.process_time() - cpu_started + earlier_cpu
    if method == "central-ligo":
        notes.append(CENTRAL_NOTE)
    elif method == "fed-scratch":
        full = target_parameters(config)
        trainable, shared = _parameter_summary([full] * config.num_parties, full), full
        steps = config.federation.finetune_rounds * config.federation.local_steps
        notes += ["round 1 sends no model down: every party builds the random initial target from the shared seed"]
    elif method.startswith("fed-grow") or method == "operator-fedavg":
        trainable, shared = dual_ligo_parameters(config)
    return MethodRun(method, base.seed, records, test, wall, cpu, trainable, shared, steps, notes)


def earlier_sittings(records: list[dict[str, Any]], resumed: int) -> tuple[float, float, str]:
    """The wall and CPU seconds a run resumed after round ``resumed`` spent in its earlier sittings (their operator
    rounds' recorded ``seconds`` and ``cpu_seconds``), and the note saying so. A round recorded before rounds kept
    their CPU time adds none, and the note says the CPU time is then the resumed sitting's only."""
    earlier = [record for record in records if record["phase"] == "operator" and record["round"] <= resumed]
    wall = sum(record["seconds"] for record in earlier)
    if all("cpu_seconds" in record for record in earlier):
        cpu = sum(record["cpu_seconds"] for record in earlier)
        return wall, cpu, (f"resumed after round {resumed} of an interrupted run: its wall and CPU times add those "
                           f"rounds' recorded {wall:.0f} s and {cpu:.0f} CPU s")
    return wall, 0.0, (f"resumed after round {resumed} of an interrupted run: its wall time adds those rounds' "
                       f"recorded {wall:.0f} s; its CPU time is the resumed sitting's only")


def _score_saved_models(config: FederationConfig, test_set: datasets.Dataset, run_dir: Path,
                        keep_models: bool) -> list[dict[str, float]]:
    """Score the final model every party of a federated run saved (``experiment.training.final_model_dir``);
    unless ``keep_models``, then delete it and the adapter it was merged from."""
    _, model_class = model_classes(config)
    scores = []
    for party in range(config.num_parties):
        folder = final_model_dir(run_dir, party)
        scores.append(test_scores(model_class.from_pretrained(folder), config, test_set, run_dir / "test"))
        if not keep_models:
            shutil.rmtree(folder)
            adapter = final_adapter_dir(run_dir, party)
            if adapter.exists():  # none for a model not grown (Fed-Scratch's)
                shutil.rmtree(adapter)
    return scores


def _score_models(models: Sequence[torch.nn.Module], config: FederationConfig, test_set: datasets.Dataset,
                  run_dir: Path, keep_models: bool) -> list[dict[str, float]]:
    """Score every party's final model (a model shared by several parties once); with ``keep_models``
    save each where a federated run keeps it."""
    scores: dict[int, dict[str, float]] = {}
    for party, model in enumerate(models):
        if id(model) not in scores:
            scores[id(model)] = test_scores(model, config, test_set, run_dir / "test")
        if keep_models:
            model.save_pretrained(final_model_dir(run_dir, party))
    return [scores[id(model)] for model in models]


def _mean(values: list[float]) -> float:
    return sum(values) / len(values) if values else math.nan


def majority_class_reference(config: FederationConfig, test_labels: Sequence[int]) -> dict[str, Any]:
    """Accuracy of always predicting the party's most frequent *training* label, on its held-out share
    and on the common test split.

    Under label skew this is far above chance on the held-out shares: a method near it has learnt little
    beyond the label prior. The common test split is not skewed, so there it is near 1 / classes.
    """
    held_out, test = [], []
    for party in range(config.num_parties):
        train, party_held_out = party_shares(config, party)
        majority = Counter(train["label"]).most_common(1)[0][0]
        held_out.append(_share_of(party_held_out["label"], majority))
        test.append(_share_of(test_labels, majority))
    return {"held_out": {"mean": _mean(held_out), "per_party": held_out},
            "test": {"mean": _mean(test), "per_party": test}}


def _share_of(labels: Sequence[int], label: int) -> float:
    return sum(int(value) == label for value in labels) / len(labels)


def party_data(config: FederationConfig) -> list[dict[str, Any]]:
    """Every party's training and held-out example counts and training label counts (the partition)."""
    summary = []
    for party in range(config.num_parties):
        train, held_out = party_shares(config, party)
        counts = Counter(train["label"])
        summary.append({"train": len(train), "held_out": len(held_out),
                        "train_labels": {str(label): counts[label] for label in sorted(counts)}})
    return summary
