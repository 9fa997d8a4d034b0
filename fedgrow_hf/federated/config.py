"""Deprecated: the federation config moved to :mod:`fedgrow_hf.experiment.config` (the schema) and
:mod:`fedgrow_hf.federated.run_config` (a Flower app's run config). This module re-exports both."""

from __future__ import annotations

import warnings

from ..experiment.config import (
    AGGREGATORS,
    BERT_PRETRAIN_RECIPE,
    DERIVE_KEYS,
    FAMILIES,
    FINETUNE_INITS,
    MAX_SEED,
    PARTY_METRICS,
    PHASE2_MODES,
    RANGE,
    VIT_PRETRAIN_SETTINGS,
    ConfigError,
    DataSettings,
    FederationConfig,
    FederationSettings,
    ModelSettings,
    PartySettings,
    Range,
    SecureAggregationSettings,
    bounded,
    check_known_keys,
    check_values,
)
from .run_config import (
    RUN_CONFIG_APP_KEYS,
    RUN_CONFIG_PATH_KEY,
    RUN_CONFIG_RESUME_KEY,
    RUN_CONFIG_RUN_DIR_KEY,
    apply_run_overrides,
    resolve_run,
)

warnings.warn(
    "fedgrow_hf.federated.config is deprecated: import from fedgrow_hf.experiment.config "
    "(resolve_run and apply_run_overrides from fedgrow_hf.federated.run_config)",
    DeprecationWarning,
    stacklevel=2,
)

__all__ = [
    "AGGREGATORS",
    "BERT_PRETRAIN_RECIPE",
    "DERIVE_KEYS",
    "FAMILIES",
    "FINETUNE_INITS",
    "MAX_SEED",
    "PARTY_METRICS",
    "PHASE2_MODES",
    "RANGE",
    "RUN_CONFIG_APP_KEYS",
    "RUN_CONFIG_PATH_KEY",
    "RUN_CONFIG_RESUME_KEY",
    "RUN_CONFIG_RUN_DIR_KEY",
    "VIT_PRETRAIN_SETTINGS",
    "ConfigError",
    "DataSettings",
    "FederationConfig",
    "FederationSettings",
    "ModelSettings",
    "PartySettings",
    "Range",
    "SecureAggregationSettings",
    "apply_run_overrides",
    "bounded",
    "check_known_keys",
    "check_values",
    "resolve_run",
]
