"""The Fed-Grow party as a Flower ``ClientApp`` (Message API): a thin wrapper around ``FedGrowTrainer``.

Messages a party handles:

* ``train`` (phase 1): Global-LiGO in, ``local_steps`` of local training, Global-LiGO out, with the
  party's metrics (loss before/after, accuracy on its held-out share, example count).
* ``train.intermediate`` (``share_intermediate`` only, once, after round 1): the party's grown intermediate
  model (its Local-LiGO applied to its source) out; the server's average comes back with round 2's
  ``train`` message (record ``intermediate``) and the party grows from it from then on.
* ``train.finetune`` (phase 2): the final Global-LiGO in; the party merges its grown model
  (``merge_and_unload``) and, ``mode="merge"`` (the operator-only regime), keeps it as it is, reporting
  its held-out figures; otherwise it fine-tunes it. ``mode="local"``: only metrics go out (the final ones and
  the held-out learning curve at ``task.finetune_eval_steps``), the grown model stays with the party
  (saved in its folder). ``mode="federated"``: the grown model's weights go out
  for FedAvg (the comparison baseline: federated fine-tuning of the grown model); after the last
  round the party also saves the model it trained, so every mode leaves each party's final model in
  ``<party folder>/grown``.

The party's own files live under ``<run_dir>/parties/party-<id>``, among them its ledger of every message it
received and sent (``ledger.jsonl``, :mod:`.ledger`); its config comes from the app
factory (simulation) or from the run config key ``config`` (a path; ``flwr run``) together with the
node config ``partition-id``.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import torch
from flwr.app import ArrayRecord, Context, Message, MetricRecord, RecordDict
from flwr.clientapp import ClientApp
from flwr.clientapp.typing import Mod
from transformers import Trainer

from ..experiment.config import FederationConfig
from ..experiment.curves import EvaluateAt
from ..experiment.models import experiment_task, model_classes, target_config
from ..experiment.stream import StreamTrainer
from ..experiment.training import final_model_dir, finetune_arguments, finetune_eval_steps, training_arguments
from .card import save_party_adapter, write_party_card
from .disclosure import disclosed_finetune_metrics
from .ledger import keep_ledger
from .party import (
    built_party,
    keep_shared_intermediate,
    party_dir_of,
    party_id_of,
    prepare_round,
    state_trainer,
    train_party_round,
)
from .party_errors import contain_party_errors
from .run_config import resolve_run
from .screening import (
    ARRAYS_KEY,
    CONFIG_KEY,
    FINETUNE_CURVE,
    INTERMEDIATE_KEY,
    METRICS_KEY,
    PARTY_KEY,
    WEIGHT_KEY,
)
from .secure_aggregation import route_secure_aggregation

# the Trainer's evaluation key of each curve a party reports after local phase 2
TRAINER_KEYS = {"curve_accuracy": "eval_accuracy", "curve_precision_macro": "eval_precision_macro",
                "curve_eval_loss": "eval_loss"}


def make_client_app(
    config: FederationConfig | None = None, run_dir: str | None = None, mods: list[Mod] | None = None
) -> ClientApp:
    """A ClientApp for ``config`` (or, when None, the config named by the run config at run time).

    With ``[federation].secure_aggregation`` enabled, phase-1 messages go to the SecAgg+ app
    (:mod:`.secure_aggregation`); ``mods`` wrap both, the party's ledger of what it received and sent
    (:mod:`.ledger`) wraps them, and any exception inside becomes an error reply naming only its category
    (:mod:`.party_errors`).
    """
    app = ClientApp(mods=[contain_party_errors, keep_ledger(config, run_dir), *(mods or []),
                          route_secure_aggregation(config, run_dir)])

    @app.train()
    def train(msg: Message, context: Context) -> Message:
        cfg, root = resolve_run(context.run_config, config, run_dir)
        server_round = int(msg.content[CONFIG_KEY]["server-round"])
        if INTERMEDIATE_KEY in msg.content.array_records:
            keep_shared_intermediate(root, party_id_of(context), msg.content[INTERMEDIATE_KEY].to_torch_state_dict())
        state, metrics = train_party_round(
            cfg, root, party_id_of(context), msg.content[ARRAYS_KEY].to_torch_state_dict(), server_round
        )
        content = RecordDict({ARRAYS_KEY: ArrayRecord(state), METRICS_KEY: MetricRecord(metrics)})
        return Message(content=content, reply_to=msg)

    @app.train("intermediate")
    def intermediate(msg: Message, context: Context) -> Message:
        cfg, root = resolve_run(context.run_config, config, run_dir)
        party = party_id_of(context)
        model, train_set, _ = built_party(cfg, root, party)
        trainer = state_trainer(cfg, root, party, model)
        trainer.load_private_state(trainer.latest_round())
        content = RecordDict({
            ARRAYS_KEY: ArrayRecord(model.base_model.intermediate_state_dict()),
            METRICS_KEY: MetricRecord({PARTY_KEY: party, WEIGHT_KEY: len(train_set)}),
        })
        return Message(content=content, reply_to=msg)

    @app.train("finetune")
    def finetune(msg: Message, context: Context) -> Message:
        cfg, root = resolve_run(context.run_config, config, run_dir)
        party = party_id_of(context)
        model, train_set, eval_set = built_party(cfg, root, party)
        settings = msg.content[CONFIG_KEY]
        party_dir = party_dir_of(root, party)
        grown = _grown_model(cfg, root, party, model, msg, settings)
        if settings["mode"] == "merge":
            return _merged_reply(cfg, root, party, model, grown, train_set, eval_set, msg)
        local = settings["mode"] == "local"
        # local fine-tuning is the whole of phase 2: its learning curve is reported (a federated round is one point)
        evaluations = EvaluateAt(finetune_eval_steps(cfg) if local else [cfg.federation.finetune_steps])
        # a federated round continues the party's data stream where the previous round ended
        first_step = (int(settings["finetune-round"]) - 1) * cfg.federation.finetune_steps
        trainer = StreamTrainer(
            grown, finetune_arguments(cfg, party_dir / "finetune"), train_dataset=train_set, eval_dataset=eval_set,
            callbacks=[evaluations], first_step=first_step, **experiment_task(cfg).trainer_options(),
        )
        # a federated round first scores the model it starts from (the average received, from round 2 on);
        # training reseeds at its start, so this evaluation changes nothing it does
        before = None if local else float(trainer.evaluate()["eval_loss"])
        output = trainer.train()
        result = evaluations.history[max(evaluations.history)]
        metrics = {
            PARTY_KEY: party,
            WEIGHT_KEY: len(train_set),
            "train_loss": float(output.training_loss),
            "eval_loss": float(result["eval_loss"]),
            "accuracy": float(result["eval_accuracy"]),
            "precision_macro": float(result["eval_precision_macro"]),
        }
        if before is not None:
            metrics["eval_loss_before"] = before
        if local:
            points = [evaluations.history[step] for step in sorted(evaluations.history)]
            metrics.update({name: [float(point[TRAINER_KEYS[name]]) for point in points] for name in FINETUNE_CURVE})
        content = RecordDict({METRICS_KEY: MetricRecord(disclosed_finetune_metrics(metrics, cfg))})
        if not local:
            content[ARRAYS_KEY] = ArrayRecord(grown.state_dict())
        if local or int(settings["finetune-round"]) == cfg.federation.finetune_rounds:
            # the party keeps its final model: the one its last metrics describe
            grown.save_pretrained(final_model_dir(root, party))
            write_party_card(cfg, root, party, model, result, train_set, eval_set, content)
        return Message(content=content, reply_to=msg)

    return app


def _merged_reply(cfg: FederationConfig, root: Path, party: int, model: Any, grown: torch.nn.Module,
                  train_set: Any, eval_set: Any, msg: Message) -> Message:
    """``mode="merge"``: the party keeps its merged model (``grown``, merged from its LiGO ``model``) as it is
    and reports its held-out figures (the same function its LiGO model computed in the last round)."""
    trainer = Trainer(grown, training_arguments(cfg, party_dir_of(root, party) / "merged", 1),
                      **experiment_task(cfg).trainer_options())
    result = trainer.evaluate(eval_set)
    metrics = {PARTY_KEY: party, WEIGHT_KEY: len(train_set), "eval_loss": float(result["eval_loss"]),
               "accuracy": float(result["eval_accuracy"]), "precision_macro": float(result["eval_precision_macro"])}
    content = RecordDict({METRICS_KEY: MetricRecord(disclosed_finetune_metrics(metrics, cfg))})
    grown.save_pretrained(final_model_dir(root, party))
    write_party_card(cfg, root, party, model, result, train_set, eval_set, content)
    return Message(content=content, reply_to=msg)


def _grown_model(cfg: FederationConfig, root: Path, party: int, model: Any, msg: Message,
                 settings: Any) -> torch.nn.Module:
    """The model phase 2 trains: the party's own merge, the averaged one (federated rounds > 1), or a
    seeded random target (``finetune_init="random"``, the from-scratch baseline)."""
    received = msg.content.array_records.get(ARRAYS_KEY)
    _, model_class = model_classes(cfg)
    if int(settings["finetune-round"]) > 1 or settings["init"] == "random":
        torch.manual_seed(cfg.seed)  # the same random start in every party
        grown = model_class(target_config(cfg))
        if int(settings["finetune-round"]) > 1:
            grown.load_state_dict(received.to_torch_state_dict())
        return grown
    trainer = state_trainer(cfg, root, party, model)
    if trainer.latest_round() > 0:
        trainer.load_private_state(trainer.latest_round())
    prepare_round(cfg, root, party, model, max(1, trainer.latest_round()))
    trainer.set_global_state(received.to_torch_state_dict())
    save_party_adapter(model, root, party)
    # merge a copy: the cached LiGO model stays usable for another round in this process
    return copy.deepcopy(model).merge_and_unload(progressbar=False)


app = make_client_app()
