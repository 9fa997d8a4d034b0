"""A party's side of a Fed-Grow round, shared by the plain ``ClientApp`` (:mod:`.client_app`) and the
SecAgg+ one (:mod:`.secure_aggregation`): which party a node is, its model and data, and one phase-1 round.
"""

from __future__ import annotations

import json
import uuid
from functools import lru_cache
from pathlib import Path
from typing import Any

import torch
from flwr.app import Context
from safetensors.torch import load_file, save_file

from ..experiment.config import FederationConfig
from ..experiment.data import party_datasets
from ..experiment.models import experiment_task, shared_heads
from ..experiment.parties import build_party_model
from ..experiment.training import training_arguments
from .screening import PARTY_KEY, WEIGHT_KEY
from .trainer import FedGrowTrainer

SHARED_INTERMEDIATE = "shared_intermediate.safetensors"  # in a party's folder: the average it received


# Parties kept built per process: the in-process engine runs every party in one process, and a party rebuilt
# every round (its source reloaded, its data tokenised, its operator built) costs a second or more a round.
# Sixteen covers the presets' ten parties; each holds its source, operator and data (a few hundred MB at most).
PARTIES_KEPT = 16


INCARNATION_FILE = "party.json"  # in a party's folder: the id of this folder's life (party_incarnation)


def built_party(cfg: FederationConfig, root: Path, party: int) -> tuple[Any, Any, Any]:
    """The party's model, train share and held-out share, built once per process and life of its folder."""
    return load_party(cfg.to_json(), party, str(root), party_incarnation(party_dir_of(root, party)))


@lru_cache(maxsize=PARTIES_KEPT)
def load_party(config_json: str, party_id: int, run_dir: str, incarnation: str) -> tuple[Any, Any, Any]:
    """Model and data of a party, built once per process and life of its folder (``incarnation``): all
    trainable state is reloaded each round, except before round 1, which starts from the model as built; so
    a run started afresh in a deleted folder's place gets a new model, not the one an earlier run trained in
    this process, and a model pinned to a run's shared intermediate is never handed to another run."""
    config = FederationConfig.from_dict(json.loads(config_json))
    train, evaluation = party_datasets(config, party_id)
    return build_party_model(config, party_id), train, evaluation


def party_incarnation(party_dir: Path) -> str:
    """The id of this life of ``party_dir``: written the first time a run uses the folder, read after
    (a resumed run keeps its parties' ids; a new folder, even under an old name, gets a new one)."""
    path = party_dir / INCARNATION_FILE
    if not path.is_file():
        party_dir.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps({"id": uuid.uuid4().hex}), encoding="utf-8")
    return str(json.loads(path.read_text(encoding="utf-8"))["id"])


def party_id_of(context: Context) -> int:
    return int(context.node_config["partition-id"])


def party_dir_of(root: Path, party: int) -> Path:
    """A party's own folder in a run folder (on its own machine in a deployment)."""
    return root / "parties" / f"party-{party}"


def keep_shared_intermediate(root: Path, party: int, state: dict[str, torch.Tensor]) -> None:
    """Keep the averaged intermediate the server sent (``share_intermediate``) in the party's folder: every
    later round grows from it, in whichever process runs the round."""
    directory = party_dir_of(root, party)
    directory.mkdir(parents=True, exist_ok=True)
    save_file({key: value.contiguous() for key, value in state.items()}, str(directory / SHARED_INTERMEDIATE))


def prepare_round(cfg: FederationConfig, root: Path, party: int, model: Any, server_round: int) -> None:
    """What the round trains: the Local-LiGO only in the first ``local_ligo_rounds`` rounds (all if 0), and
    with ``share_intermediate`` from round 2 on the shared intermediate instead of the party's own."""
    fed = cfg.federation
    model.base_model.train_local_stages(not fed.local_ligo_rounds or server_round <= fed.local_ligo_rounds)
    if fed.share_intermediate and server_round > 1 and not model.base_model.has_pinned_intermediate:
        path = party_dir_of(root, party) / SHARED_INTERMEDIATE
        if not path.is_file():
            raise FileNotFoundError(f"round {server_round} grows from the shared intermediate, but {path} is missing")
        model.base_model.pin_intermediate(load_file(str(path)))


def state_trainer(cfg: FederationConfig, root: Path, party: int, model: Any) -> FedGrowTrainer:
    """A trainer of the party's model that moves state between rounds (loads what the party kept of its last
    round, the Global-LiGO it receives) but trains nothing: the intermediate exchange and the merge. It splits
    private from shared state as every round's trainer does (``shared_heads``), or a saved round would not
    belong to it."""
    party_dir = party_dir_of(root, party)
    return FedGrowTrainer(
        model, training_arguments(cfg, party_dir / "trainer", 1), party_dir=party_dir,
        schedule_steps=cfg.federation.rounds * cfg.federation.local_steps, shared_heads=shared_heads(cfg),
    )


def train_party_round(
    cfg: FederationConfig, root: Path, party: int, global_state: dict[str, torch.Tensor], server_round: int
) -> tuple[dict[str, torch.Tensor], dict[str, int | float]]:
    """One phase-1 round of a party: the server's Global-LiGO in, local training, its Global-LiGO and
    metrics out."""
    model, train_set, eval_set = built_party(cfg, root, party)
    party_dir = party_dir_of(root, party)
    prepare_round(cfg, root, party, model, server_round)
    trainer = FedGrowTrainer(
        model,
        training_arguments(cfg, party_dir / "trainer", cfg.federation.local_steps),
        party_dir=party_dir,
        train_dataset=train_set,
        eval_dataset=eval_set,
        schedule_steps=cfg.federation.rounds * cfg.federation.local_steps, shared_heads=shared_heads(cfg),
        **experiment_task(cfg).trainer_options(),
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
