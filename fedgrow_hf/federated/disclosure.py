"""What a party reveals in clear when secure aggregation is on (``secure_aggregation.party_metrics``).

SecAgg+ hides a party's phase-1 update, not what it sends beside it: its example count (which scales the
update) and its metrics. Local phase 2 sends no update at all, only figures: the party's final held-out
accuracy and its learning curve. With secure aggregation on, ``party_metrics`` governs both phases, so a
federation that asks for ``"none"`` learns no party's figures at all:

* ``"exact"``: everything, as without secure aggregation;
* ``"coarse"`` (default): the example count to two significant digits (phase 1 still weights the average by
  it, off by at most 5%), every loss and accuracy -- curve points included -- to two decimals;
* ``"none"``: nothing in phase 1 (an unweighted average); in local phase 2 only the party's id, which binds
  the reply to the node that sent it and tells the server who finished.

Federated phase 2 sends each party's whole grown model in clear, so its figures are sent as they are.
"""

from __future__ import annotations

from typing import Any

from ..experiment.config import FederationConfig
from .screening import (
    FEDERATED_FINETUNE_METRICS,
    FINETUNE_CURVE,
    FINETUNE_METRICS,
    MERGE_METRICS,
    PARTY_KEY,
    WEIGHT_KEY,
)

# phase-2 modes whose replies carry figures only (no model): what ``party_metrics`` governs
FIGURES_ONLY = ("local", "merge")


def disclosed_metrics(metrics: dict[str, Any], mode: str) -> dict[str, Any]:
    """What a phase-1 party reveals beside its masked update under ``party_metrics=mode``."""
    if mode == "exact":
        return dict(metrics)
    if mode == "none":
        return {}
    coarse = {name: _coarse(value) for name, value in metrics.items() if name not in (PARTY_KEY, WEIGHT_KEY)}
    return {**coarse, PARTY_KEY: metrics[PARTY_KEY], WEIGHT_KEY: max(1, int(float(f"{metrics[WEIGHT_KEY]:.2g}")))}


def finetune_disclosure(config: FederationConfig) -> str:
    """How much a party's phase-2 reply reveals: ``party_metrics`` for local phase 2 under secure aggregation,
    otherwise everything."""
    secure = config.secure_aggregation
    return secure.party_metrics if secure.enabled and config.federation.phase2 in FIGURES_ONLY else "exact"


def disclosed_finetune_metrics(metrics: dict[str, Any], config: FederationConfig) -> dict[str, Any]:
    """What a party's phase-2 reply carries (see the module doc)."""
    mode = finetune_disclosure(config)
    return {PARTY_KEY: metrics[PARTY_KEY]} if mode == "none" else disclosed_metrics(metrics, mode)


def finetune_reply_fields(config: FederationConfig) -> tuple[tuple[str, ...], tuple[str, ...], bool]:
    """What the server requires of a phase-2 reply: its metric names, its curve names and whether it counts
    its examples."""
    if finetune_disclosure(config) == "none":
        return (), (), False
    if config.federation.phase2 == "merge":
        return MERGE_METRICS, (), True
    if config.federation.phase2 == "federated":
        return FEDERATED_FINETUNE_METRICS, (), True
    return FINETUNE_METRICS, FINETUNE_CURVE, True


def _coarse(value: Any) -> Any:
    return [round(float(point), 2) for point in value] if isinstance(value, list) else round(float(value), 2)
