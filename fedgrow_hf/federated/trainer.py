"""``FedGrowTrainer``: one Fed-Grow party's ``transformers.Trainer``.

A party trains its Dual-LiGO model with the Trainer it already knows; the only federated addition is
the round boundary: the server's Global-LiGO comes in (:meth:`FedGrowTrainer.set_global_state`), the
party trains for the round's steps, and its Global-LiGO goes out (:meth:`get_global_state`).
Everything else -- the Local-LiGO, the task head (unless ``shared_heads`` names it), the optimizer and
LR-scheduler state -- is the party's own. It is kept in ``party_dir`` between rounds, so that a party process that is restarted
(or, in Flower's simulation engine, a round that runs in another worker) continues where it was.

Rounds also continue the party's *data*: round ``r`` trains on steps ``(r - 1) * max_steps ...`` of one
stream of batches (:class:`~fedgrow_hf.experiment.stream.StreamTrainer`), exactly the batches one long
training would have seen.
"""

from __future__ import annotations

import json
import os
import shutil
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from peft import PeftModel
from peft.utils import ModulesToSaveWrapper
from safetensors.torch import load_file, save_file

from ..experiment import curves, stream
from ..experiment.models import HEAD_PREFIX
from ..experiment.stream import StreamTrainer
from ..tuners.ligo import check_state_dict
from .disk import writing

PRIVATE_WEIGHTS = "private_state.safetensors"
OPTIMIZER_STATE = "optimizer.pt"
SCHEDULER_STATE = "scheduler.pt"
PARTY_STATE = "party_state.json"
# names this module held before they moved to fedgrow_hf.experiment: still importable, with a warning
MOVED = {"StreamSampler": stream, "evaluation_steps": curves, "EvaluateAt": curves}


def __getattr__(name: str) -> Any:
    if name in MOVED:
        home = MOVED[name]
        warnings.warn(f"fedgrow_hf.federated.trainer.{name} moved to {home.__name__}.{name}",
                      DeprecationWarning, stacklevel=2)
        return getattr(home, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


class FedGrowTrainer(StreamTrainer):
    """A ``Trainer`` for one Fed-Grow party whose model is a Dual-LiGO ``PeftModel``.

    Args:
        model: the party's grown model (``fedgrow_hf.grow(..., intermediate_config=...)``).
        args: ordinary ``TrainingArguments``; ``max_steps`` is the number of local steps of one round.
        party_dir: where the party's private state lives between rounds (created if needed), one
            folder per round; :meth:`train_round` continues from it, so a restarted party resumes.
        schedule_steps: length of the LR schedule over the whole federation (e.g. rounds x local
            steps), so that the schedule runs across rounds instead of restarting every round.
            Defaults to one round's steps.
        shared_heads: target modules kept in full (``modules_to_save``, e.g. ``["classifier"]``) whose
            trained weights travel with the Global-LiGO, under ``head.<module>.`` (``[federation].share_head``,
            as the Fed-Grow authors' code shares them); none by default: the head is the party's own.
        **kwargs: everything else ``Trainer`` takes (``train_dataset``, ``processing_class``,
            ``data_collator``, ``compute_metrics`` ...).
    """

    def __init__(
        self,
        model: PeftModel,
        args: Any = None,
        *,
        party_dir: str | os.PathLike,
        schedule_steps: int | None = None,
        shared_heads: Sequence[str] = (),
        **kwargs: Any,
    ) -> None:
        if not hasattr(model, "global_state_dict") or not model.base_model.is_dual_ligo:
            raise TypeError(
                "FedGrowTrainer needs a Dual-LiGO PeftModel (fedgrow_hf.grow(..., intermediate_config=...)): "
                "only its Global-LiGO stage can be shared"
            )
        self._resume_dir: Path | None = None  # where create_optimizer/create_scheduler restore state from
        super().__init__(model=model, args=args, **kwargs)
        self.party_dir = Path(party_dir)
        self.party_dir.mkdir(parents=True, exist_ok=True)
        self.schedule_steps = schedule_steps
        self.shared_heads = tuple(shared_heads)
        self.head_state()  # a module that is not a trained head is refused here, not at the first round

    # ----------------------------------------------------------------------------------------------
    # round boundary
    # ----------------------------------------------------------------------------------------------
    def get_global_state(self) -> dict[str, torch.Tensor]:
        """The state to send: the Global-LiGO (the only part of a strict Fed-Grow party that leaves it), and the
        ``shared_heads``."""
        return {**self.model.global_state_dict(), **self.head_state()}

    def set_global_state(self, state_dict: Mapping[str, torch.Tensor]) -> None:
        """Load the server's Global-LiGO and shared heads (all validated first; on any problem nothing changes)."""
        heads = {key: value for key, value in state_dict.items() if key.startswith(HEAD_PREFIX)}
        parameters = self._head_parameters()
        check_state_dict(parameters, heads, "task head")
        self.model.load_global_state_dict({key: value for key, value in state_dict.items() if key not in heads})
        with torch.no_grad():
            for key, param in parameters.items():
                param.copy_(torch.as_tensor(heads[key]))

    def head_state(self) -> dict[str, torch.Tensor]:
        """The ``shared_heads``' trained weights, as they are sent (``head.<module>.<name>``)."""
        return {key: param.detach().clone() for key, param in self._head_parameters().items()}

    def _head_parameters(self) -> dict[str, torch.nn.Parameter]:
        parameters = {}
        for name in self.shared_heads:
            wrapper = self.model.base_model.model.get_submodule(name)
            if not isinstance(wrapper, ModulesToSaveWrapper):
                raise ValueError(f"shared head {name!r} is not a module the model trains in full: grow with "
                                 f"modules_to_save=[{name!r}]")
            trained = wrapper.modules_to_save[wrapper.active_adapters[0]]
            parameters.update({f"{HEAD_PREFIX}{name}.{key}": param for key, param in trained.named_parameters()})
        return parameters

    def train_round(
        self, global_state: Mapping[str, torch.Tensor] | None = None, server_round: int | None = None
    ) -> dict[str, float]:
        """Train one round: private state of the previous round + ``global_state`` -> ``max_steps`` steps.

        ``server_round`` (1-based) names the round; the private state is read from the one before it
        and written under it, so a round that is run again (a retried round, a server resumed from
        its checkpoint) starts from exactly the same state. Without it, the round after the latest
        one on disk is trained. Returns the metrics the party reports (``train_loss``: mean loss of
        the round's steps; ``num_examples``: examples seen).
        """
        server_round = self.latest_round() + 1 if server_round is None else server_round
        self.begin_round(server_round)
        if global_state is not None:
            self.set_global_state(global_state)
        output = self.train()
        self.save_private_state(server_round)
        examples = output.global_step * self.args.per_device_train_batch_size * self.args.gradient_accumulation_steps
        return {"train_loss": float(output.training_loss), "num_examples": int(examples)}

    def begin_round(self, server_round: int) -> None:
        """Restore the private state the round starts from (saved after ``server_round - 1``).

        The state before round 1 is the model as built; it is saved as round 0 the first time, so
        that a round 1 run again in the same process starts from it too.
        """
        if server_round == 1 and not (self.round_dir(0) / PARTY_STATE).exists():
            self.save_private_state(0)
        self.load_private_state(server_round - 1)
        self.first_step = (server_round - 1) * self.args.max_steps

    # ----------------------------------------------------------------------------------------------
    # private state on disk: party_dir/round-NNNN/
    # ----------------------------------------------------------------------------------------------
    def round_dir(self, server_round: int) -> Path:
        return round_dir(self.party_dir, server_round)

    def latest_round(self) -> int:
        """The last round whose private state is complete on disk (0: none)."""
        done = [int(d.name.split("-")[1]) for d in self.party_dir.glob("round-*") if (d / PARTY_STATE).exists()]
        return max(done, default=0)

    def private_state_dict(self) -> dict[str, torch.Tensor]:
        """The party's own state: the Local-LiGO (trained or, after ``local_ligo_rounds``, fixed) and every
        other trainable parameter that is not shared (task head unless ``shared_heads`` names it, saved modules).
        What is shared comes from the server each round: restoring it from here would undo the average."""
        shared = {id(p) for p in (*self.model.base_model.global_parameters(), *self._head_parameters().values())}
        local = {id(p) for p in self.model.base_model.local_parameters()}
        return {
            name: param.detach().cpu().contiguous()
            for name, param in self.model.named_parameters()
            if (param.requires_grad or id(param) in local) and id(param) not in shared
        }

    def save_private_state(self, server_round: int) -> None:
        """Write the private state after ``server_round``; the marker file is written last.

        Only the two latest rounds are kept: the last one, and the one before it in case the last
        round is run again.
        """
        directory = self.round_dir(server_round)
        directory.mkdir(parents=True, exist_ok=True)
        with writing(directory / PRIVATE_WEIGHTS):
            save_file(self.private_state_dict(), str(directory / PRIVATE_WEIGHTS))
        if self.optimizer is not None:  # none before the first round
            with writing(directory / OPTIMIZER_STATE):
                torch.save(named_optimizer_state(self.optimizer, self.model), directory / OPTIMIZER_STATE)
        if self.lr_scheduler is not None:
            with writing(directory / SCHEDULER_STATE):
                torch.save(self.lr_scheduler.state_dict(), directory / SCHEDULER_STATE)
        _atomic_write_text(directory / PARTY_STATE, json.dumps({"round": server_round}))
        for old in self.party_dir.glob("round-*"):
            if int(old.name.split("-")[1]) < server_round - 1:
                shutil.rmtree(old, ignore_errors=True)

    def load_private_state(self, server_round: int) -> None:
        """Load the private state saved after ``server_round``."""
        directory = self.round_dir(server_round)
        if not (directory / PARTY_STATE).exists():
            raise FileNotFoundError(
                f"party state of round {server_round} is missing in {self.party_dir}: this party cannot "
                f"continue round {server_round + 1} without its private Local-LiGO and head"
            )
        state = load_file(str(directory / PRIVATE_WEIGHTS))
        _check_private_state(directory, state, self.private_state_dict())
        params = dict(self.model.named_parameters())
        with torch.no_grad():
            for name, value in state.items():
                params[name].copy_(value)
        self.optimizer = self.lr_scheduler = None  # re-created by train(), then loaded from _resume_dir
        self._resume_dir = directory

    def create_optimizer(self, model: torch.nn.Module | None = None) -> torch.optim.Optimizer:
        fresh = self.optimizer is None
        optimizer = super().create_optimizer(model)
        resume_dir = self._resume_dir
        if fresh and resume_dir is not None and (resume_dir / OPTIMIZER_STATE).exists():
            load_named_optimizer_state(optimizer, self.model, torch.load(resume_dir / OPTIMIZER_STATE, weights_only=True))
        return optimizer

    def create_scheduler(
        self, num_training_steps: int, optimizer: torch.optim.Optimizer | None = None
    ) -> torch.optim.lr_scheduler.LRScheduler:
        fresh = self.lr_scheduler is None
        scheduler = super().create_scheduler(self.schedule_steps or num_training_steps, optimizer)
        resume_dir = self._resume_dir
        if fresh and resume_dir is not None and (resume_dir / SCHEDULER_STATE).exists():
            scheduler.load_state_dict(torch.load(resume_dir / SCHEDULER_STATE, weights_only=True))
            # the constructor reset the optimizer's LR to the schedule's start; continue where it was
            for group, lr in zip(scheduler.optimizer.param_groups, scheduler.get_last_lr()):
                group["lr"] = lr
        return scheduler


def round_dir(party_dir: Path, server_round: int) -> Path:
    """Where a party keeps its private state after ``server_round`` (0: as built), for readers without a trainer
    (a diagnostic of a finished run)."""
    return party_dir / f"round-{server_round:04d}"


def named_optimizer_state(optimizer: torch.optim.Optimizer, model: torch.nn.Module) -> dict[str, Any]:
    """The optimizer's state dict with each parameter's state under its name in ``model``.

    PyTorch keys optimizer state by position, so state saved while the Local-LiGO trained would land on
    other parameters once it no longer does (``local_ligo_rounds``): by name, each state finds its own."""
    names = {id(param): name for name, param in model.named_parameters()}
    state = optimizer.state_dict()
    order = [names[id(param)] for group in optimizer.param_groups for param in group["params"]]
    return {"param_groups": state["param_groups"], "names": order,
            "state": {order[index]: value for index, value in state["state"].items()}}


def load_named_optimizer_state(optimizer: torch.optim.Optimizer, model: torch.nn.Module, saved: dict[str, Any]) -> None:
    """Load :func:`named_optimizer_state` into ``optimizer``: every parameter it optimises gets the state
    saved under its name (a parameter new to it starts fresh; one it no longer optimises is left behind);
    hyper-parameters come from the saved group each parameter was in."""
    names = {id(param): name for name, param in model.named_parameters()}
    saved_group = {name: index for index, group in enumerate(saved["param_groups"])
                   for name in (saved["names"][position] for position in group["params"])}
    current = optimizer.state_dict()
    order = [names[id(param)] for group in optimizer.param_groups for param in group["params"]]
    for group in current["param_groups"]:
        sources = {saved_group[order[position]] for position in group["params"] if order[position] in saved_group}
        if sources:
            hyper = {key: value for key, value in saved["param_groups"][min(sources)].items() if key != "params"}
            group.update(hyper)
    current["state"] = {index: saved["state"][name] for index, name in enumerate(order) if name in saved["state"]}
    optimizer.load_state_dict(current)


def _atomic_write_text(path: Path, text: str) -> None:
    """Write through a temporary file and rename: the marker is either absent or complete."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def _check_private_state(
    directory: Path, state: Mapping[str, torch.Tensor], expected: Mapping[str, torch.Tensor]
) -> None:
    """Refuse saved private state whose keys or shapes differ from this model's.

    ``copy_`` broadcasts, so a (1, 2) tensor would silently fill a (2, 2) parameter: shapes are
    compared exactly, before any parameter is touched.
    """
    if set(state) != set(expected):
        raise ValueError(
            f"{directory} does not belong to this model: missing {sorted(set(expected) - set(state))[:5]}, "
            f"unexpected {sorted(set(state) - set(expected))[:5]}"
        )
    for name, reference in expected.items():
        if state[name].shape != reference.shape:
            raise ValueError(
                f"{directory / PRIVATE_WEIGHTS} does not belong to this model: {name} has shape "
                f"{tuple(state[name].shape)}, expected {tuple(reference.shape)}"
            )
