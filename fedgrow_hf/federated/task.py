"""Deprecated: what a party needs for a round moved to :mod:`fedgrow_hf.experiment` (``models``: the model
classes and configs; ``parties``: a party's source and model; ``data``: its data; ``training``: its training
arguments). This module re-exports them."""

from __future__ import annotations

import warnings

from ..experiment.data import (
    check_data,
    common_test_set,
    model_inputs,
    party_datasets,
    party_shares,
    tokenizer_path,
)
from ..experiment.models import MINILM, NO_DROPOUT, model_classes, source_path, target_config
from ..experiment.parties import (
    build_party_model,
    load_source,
    reference_global_stage,
    reference_intermediate_state,
    reference_target_state,
)
from ..experiment.training import (
    final_model_dir,
    finetune_arguments,
    finetune_eval_steps,
    finetune_learning_rate,
    training_arguments,
    training_options,
)
from ..sources import minilm_path

warnings.warn(
    "fedgrow_hf.federated.task is deprecated: import from fedgrow_hf.experiment "
    "(.models, .parties, .data, .training; minilm_path from fedgrow_hf.sources)",
    DeprecationWarning,
    stacklevel=2,
)

__all__ = [
    "MINILM",
    "NO_DROPOUT",
    "build_party_model",
    "check_data",
    "common_test_set",
    "final_model_dir",
    "finetune_arguments",
    "finetune_eval_steps",
    "finetune_learning_rate",
    "load_source",
    "minilm_path",
    "model_classes",
    "model_inputs",
    "party_datasets",
    "party_shares",
    "reference_global_stage",
    "reference_intermediate_state",
    "reference_target_state",
    "source_path",
    "target_config",
    "tokenizer_path",
    "training_arguments",
    "training_options",
]
