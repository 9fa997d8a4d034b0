"""Opt-in secure aggregation of phase 1 with Flower's SecAgg+ (``[federation].secure_aggregation``).

In Flower 1.42 SecAgg+ exists only for the legacy workflow API, so this path differs from the plain
one (:mod:`.server_app`, :mod:`.client_app`) in its wiring, not in what a party does:

* server: Flower's legacy ``FedAvg`` (weighted by example counts) run round by round by
  ``DefaultWorkflow(fit_workflow=SecAggPlusWorkflow(...))`` inside a ``LegacyContext``;
* party: a ``NumPyClient`` around the same round a plain party trains
  (:func:`.client_app.train_party_round`), behind Flower's ``secaggplus_mod``. It exchanges only the
  Global-LiGO arrays, as a list in the fixed order of :func:`global_keys`.

What it implies: a party sends its update quantised (``clipping_range``, ``quantization_range``),
scaled by ``num_examples / max_weight`` and masked; the server learns only the weighted sum. It can
therefore not screen single updates (keys, size, finiteness -- see :mod:`.strategy`): it validates
the unmasked aggregate instead, and stops with :class:`.server_app.FederationAborted` if that is
not a valid Global-LiGO. Not supported: Flower's server-side DP together with it (it clips each
update), ``--resume`` (the SecAgg+ round state is not checkpointed); ``round_retries`` and
``max_update_bytes`` do not apply.
"""

from __future__ import annotations

import json
import logging
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch
from flwr.app import ArrayRecord, Context, Message
from flwr.client import Client, NumPyClient
from flwr.client.mod import secaggplus_mod
from flwr.clientapp import ClientApp
from flwr.clientapp.typing import ClientAppCallable, Mod
from flwr.common import FitRes, Parameters, Scalar, ndarrays_to_parameters, parameters_to_ndarrays
from flwr.server import LegacyContext, ServerConfig
from flwr.server.client_proxy import ClientProxy
from flwr.server.strategy import FedAvg
from flwr.server.workflow import DefaultWorkflow, SecAggPlusWorkflow
from flwr.serverapp import Grid
from safetensors.torch import save_file

from ..experiment.config import FederationConfig
from ..experiment.parties import reference_global_stage
from ..tuners.ligo import GlobalStateError, validate_global_state
from .checkpoint import load_checkpoint
from .disclosure import disclosed_metrics
from .party import party_id_of, train_party_round
from .phases import (
    FINAL_OPERATOR,
    FederationAborted,
    RoundCallback,
    record_round,
    run_phase2,
    start_run,
    weighted_means,
)
from .run_config import resolve_run
from .screening import PARTY_KEY, WEIGHT_KEY
from .strategy import server_step

logger = logging.getLogger(__name__)

MASKED_ITEM_BYTES = np.dtype(np.int64).itemsize  # SecAgg+ sends every value as a masked int64


@lru_cache(maxsize=4)
def _global_keys(config_json: str) -> tuple[str, ...]:
    return tuple(sorted(reference_global_stage(FederationConfig.from_dict(json.loads(config_json))).state_dict()))


def global_keys(config: FederationConfig) -> tuple[str, ...]:
    """The Global-LiGO keys in the order both sides use for the legacy list of arrays."""
    return _global_keys(config.to_json())


# --------------------------------------------------------------------------------------------------
# party
# --------------------------------------------------------------------------------------------------
class GlobalLigoClient(NumPyClient):
    """A party's phase-1 round as a legacy ``NumPyClient``: Global-LiGO arrays in, Global-LiGO out."""

    def __init__(self, config: FederationConfig, run_dir: Path, party: int) -> None:
        self.config, self.run_dir, self.party = config, run_dir, party

    def fit(
        self, parameters: list[np.ndarray], config: dict[str, Scalar]
    ) -> tuple[list[np.ndarray], int, dict[str, Scalar]]:
        keys = global_keys(self.config)
        if len(parameters) != len(keys):
            raise ValueError(f"expected {len(keys)} Global-LiGO arrays from the server, got {len(parameters)}")
        received = {key: torch.from_numpy(np.asarray(array).copy()) for key, array in zip(keys, parameters)}
        state, metrics = train_party_round(self.config, self.run_dir, self.party, received, int(config["server-round"]))
        disclosed = disclosed_metrics(metrics, self.config.secure_aggregation.party_metrics)
        return [state[key].numpy() for key in keys], int(disclosed.get(WEIGHT_KEY, 1)), disclosed


def make_secure_client_app(
    config: FederationConfig | None = None,
    run_dir: str | None = None,
    mods: list[Mod] | None = None,
    inner_mods: list[Mod] | None = None,
) -> ClientApp:
    """The party's SecAgg+ ``ClientApp`` for phase-1 ``train`` messages.

    ``mods`` wrap ``secaggplus_mod`` (they see what leaves the party: masked vectors);
    ``inner_mods`` sit between it and the client (they see the plain update before masking).
    The plain app (:func:`.client_app.make_client_app`) hands ``train`` messages to this one when
    the config enables secure aggregation, so ``fedgrow simulate`` and ``flwr run`` need nothing else.
    """

    def client_fn(context: Context) -> Client:
        cfg, root = resolve_run(context.run_config, config, run_dir)
        return GlobalLigoClient(cfg, root, party_id_of(context)).to_client()

    return ClientApp(client_fn=client_fn, mods=[*(mods or []), secaggplus_mod, *(inner_mods or [])])


def route_secure_aggregation(config: FederationConfig | None, run_dir: str | None) -> Mod:
    """A mod of the plain app: phase-1 messages go to the SecAgg+ app when the config enables it."""

    def route(msg: Message, context: Context, call_next: ClientAppCallable) -> Message:
        if msg.metadata.message_type != "train":
            return call_next(msg, context)
        cfg, root = resolve_run(context.run_config, config, run_dir)
        if not cfg.secure_aggregation.enabled:
            return call_next(msg, context)
        return make_secure_client_app(cfg, str(root))(msg, context)

    return route


# --------------------------------------------------------------------------------------------------
# server
# --------------------------------------------------------------------------------------------------
class SecureFedAvg(FedAvg):
    """Flower's legacy FedAvg over the unmasked SecAgg+ aggregate, which it validates and records."""

    def __init__(self, config: FederationConfig, run_dir: Path, on_round: RoundCallback | None) -> None:
        self.stage = reference_global_stage(config)
        self.reference = self.stage.state_dict()
        self.keys = global_keys(config)
        self.fed_config, self.run_dir, self.on_round = config, run_dir, on_round
        self.global_state = {key: self.reference[key] for key in self.keys}
        self.rounds_done = 0
        fed = config.federation
        super().__init__(
            fraction_fit=1.0,
            fraction_evaluate=0.0,
            min_fit_clients=config.num_parties,
            min_evaluate_clients=0,
            min_available_clients=config.num_parties,
            initial_parameters=self._parameters(),
            on_fit_config_fn=lambda server_round: {"server-round": server_round, "local-steps": fed.local_steps},
        )

    def _parameters(self) -> Parameters:
        return ndarrays_to_parameters([self.global_state[key].numpy() for key in self.keys])

    def aggregate_fit(
        self,
        server_round: int,
        results: list[tuple[ClientProxy, FitRes]],
        failures: list[tuple[ClientProxy, FitRes] | BaseException],
    ) -> tuple[Parameters | None, dict[str, Scalar]]:
        down = sum(value.numel() * value.element_size() for value in self.global_state.values())
        parameters, _ = super().aggregate_fit(server_round, results, failures)
        # a problem is logged, not raised: the round keeps the old state and run_secure_federation
        # stops after Flower's workflow (raising here would leave its node-update thread running)
        if parameters is None or len(results) < self.fed_config.federation.min_train_nodes:
            logger.error(
                "round %d: SecAgg+ aggregated %d updates, fewer than min_train_nodes=%d (%d failures)",
                server_round, len(results), self.fed_config.federation.min_train_nodes, len(failures),
            )
            return None, {}
        arrays = parameters_to_ndarrays(parameters)
        # the aggregate comes back as float64: the Global-LiGO keeps the reference dtypes
        state = server_step(self.global_state, {
            key: torch.from_numpy(np.asarray(array)).to(self.reference[key].dtype) for key, array in zip(self.keys, arrays)
        }, self.fed_config.federation.server_learning_rate)
        try:
            validate_global_state(self.stage, state)
        except GlobalStateError as error:
            logger.error("round %d: the SecAgg+ aggregate is not a valid Global-LiGO: %s", server_round, error)
            return None, {}
        self.global_state = state
        self.rounds_done += 1
        up = sum(array.size for array in arrays) * MASKED_ITEM_BYTES
        parties = {  # only what the parties disclosed (secure_aggregation.party_metrics)
            str(int(fit.metrics[PARTY_KEY])): {**fit.metrics, "bytes_up": up, "bytes_down": down}
            for _, fit in results if PARTY_KEY in fit.metrics
        }
        means = ("train_loss", "eval_loss_before", "eval_loss", "accuracy")
        report = {
            "phase": "operator",
            "round": server_round,
            "secure_aggregation": True,
            "party_metrics": self.fed_config.secure_aggregation.party_metrics,
            **(weighted_means(parties, means) if len(parties) == len(results) else {}),
            "parties": parties,
            "failures": len(failures),
        }
        report["loss"] = report.get("eval_loss")
        record_round(self.run_dir, report, self.on_round)
        return self._parameters(), {}


def run_secure_federation(
    grid: Grid,
    context: Context,
    config: FederationConfig,
    run_dir: str | Path,
    *,
    resume: bool = False,
    on_round: RoundCallback | None = None,
) -> dict[str, torch.Tensor]:
    """Phase 1 under SecAgg+, then phase 2 as in the plain path; returns (and saves) the final Global-LiGO."""
    if resume:
        raise ValueError("--resume is not supported with federation.secure_aggregation (no SecAgg+ checkpoint)")
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    if load_checkpoint(run_dir) is not None or (run_dir / FINAL_OPERATOR).exists():
        raise FileExistsError(f"{run_dir} holds an earlier run: use a new run folder")
    start_run(run_dir, config)

    fed, settings = config.federation, config.secure_aggregation
    strategy = SecureFedAvg(config, run_dir, on_round)
    legacy = LegacyContext(context=context, config=ServerConfig(num_rounds=fed.rounds), strategy=strategy)
    workflow = DefaultWorkflow(
        fit_workflow=SecAggPlusWorkflow(
            num_shares=settings.num_shares,
            reconstruction_threshold=settings.reconstruction_threshold,
            max_weight=settings.max_weight,
            clipping_range=settings.clipping_range,
            quantization_range=settings.quantization_range,
            timeout=fed.round_timeout,
        )
    )
    workflow(grid, legacy)
    if strategy.rounds_done != fed.rounds:
        raise FederationAborted(
            f"SecAgg+ halted: {strategy.rounds_done} of {fed.rounds} rounds were aggregated (see Flower's log)"
        )
    final = strategy.global_state
    save_file(final, str(run_dir / FINAL_OPERATOR), metadata={"format": "pt", "fedgrow": "global-ligo"})
    if fed.phase2 != "none":
        run_phase2(grid, config, run_dir, ArrayRecord(final), on_round)
    return final
