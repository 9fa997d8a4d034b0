"""A party's model cards, written beside its final model (``<party folder>/grown/README.md``) and the adapter it was
merged from, from the run's own settings: what the model is, how its party grew and trained it, and what its
federation shared.

A model grown by a federation that averaged more than the Global-LiGO (the Fed-Grow authors' variants, or
federated fine-tuning) must not be published under a card saying that only the Global-LiGO left a party, so the
card lists what else did (``FederationSettings.sent_beyond_global_ligo``), and the facts are kept beside the model
(``federation.json``) for ``fedgrow card`` and ``fedgrow push`` to state again. Its growth facts come from the LiGO
adapter the model was merged from, which the party saves once, when it merges, in its own folder
(``experiment.training.final_adapter_dir``): the adapter holds the private Local-LiGO, so it is kept out of the
model folder a user pushes. A model phase 2 starts from a random target (Fed-Scratch) has no growth to
describe and gets no card.
"""

from __future__ import annotations

from pathlib import Path

import datasets
from flwr.app import RecordDict
from peft import PeftModel

from ..data.common import source_name
from ..experiment.config import FederationConfig
from ..experiment.models import experiment_task
from ..experiment.training import final_adapter_dir, final_model_dir, finetune_learning_rate, training_options
from ..hub import FederationFacts, TrainingFacts, TrainingPhase, build_model_card
from ..recipe import operator_phase_trains, source_locations
from .ledger import ledger_totals

CARD_FILE = "README.md"


def save_party_adapter(model: PeftModel, root: Path, party: int) -> None:
    """Keep the LiGO adapter (operator and head) the party's final model is merged from, for its card."""
    model.save_pretrained(final_adapter_dir(root, party))


def write_party_card(cfg: FederationConfig, root: Path, party: int, model: PeftModel, evaluation: dict[str, float],
                     train_set: datasets.Dataset, eval_set: datasets.Dataset, reply: RecordDict) -> Path | None:
    """Write the card of the party's final model and of the adapter it was merged from, each with the federation
    facts beside it (``evaluation``: the final model's ``Trainer.evaluate`` on ``eval_set``, the party's held-out
    share; ``model``: the party's LiGO model, whose sources' shapes the cards read where they lie; ``reply``: the
    party's last reply, not yet sent, which the bytes it states include beside its ledger's). The adapter's
    card states the operator phase only, with the figures only where the operator's last state is the model
    (``phase2 = "merge"``). Returns the model's card; None, writing nothing, when the model was not grown (no
    adapter was kept)."""
    adapter = final_adapter_dir(root, party)
    if not (adapter / "adapter_config.json").is_file():
        return None
    task = experiment_task(cfg)
    fed = cfg.federation
    exchanged = ledger_totals(root, party, pending=reply)
    federation = FederationFacts(cfg.num_parties, fed.rounds, shared=fed.sent_beyond_global_ligo(),
                                 party_bytes_received=exchanged.received, party_bytes_sent=exchanged.sent)
    phases = _phases(cfg, operator_phase_trains(model, task))
    model_dir = final_model_dir(root, party)
    for directory, merged in ((adapter, False), (model_dir, True)):
        federation.save(directory)
        card = build_model_card(
            adapter,
            repo_id=f"{cfg.name}-party-{party}" + ("" if merged else "-ligo-adapter"),
            merged=merged,
            metrics=task.figures(evaluation) if merged or fed.phase2 == "merge" else None,
            dataset_name=f"{source_name(cfg.data.source)}, party {party}'s own share",
            federation=federation,
            training=TrainingFacts(
                phases if merged else phases[:1],
                int(training_options(cfg)["per_device_train_batch_size"]),
                cfg.seed,
                len(train_set),
                len(eval_set),
                rows=task.rows(train_set),
            ),
            sources=source_locations(model),
        )
        card.save(directory / CARD_FILE)
    return model_dir / CARD_FILE


def _phases(cfg: FederationConfig, operator_trains: str) -> tuple[TrainingPhase, ...]:
    """The phases a party trained, as the card tables them: the federated operator rounds, then phase 2's
    fine-tuning when it has one (``merge``: the operator's last state is the model)."""
    fed = cfg.federation
    operator = TrainingPhase(
        f"{operator_trains}, {fed.rounds} federated rounds of {fed.local_steps} steps (the Global-LiGO averaged "
        "every round)", fed.rounds * fed.local_steps, float(training_options(cfg)["learning_rate"]))
    if fed.phase2 == "local":
        return operator, TrainingPhase("every weight of the merged model, alone", fed.finetune_steps,
                                       finetune_learning_rate(cfg))
    if fed.phase2 == "federated":
        return operator, TrainingPhase(
            f"every weight of the merged model, {fed.finetune_rounds} federated rounds (averaged every round)",
            fed.finetune_rounds * fed.finetune_steps, finetune_learning_rate(cfg))
    return (operator,)
