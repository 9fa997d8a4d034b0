"""LiGO / Dual-LiGO as a PEFT method: ``LiGOConfig`` + ``LiGOModel``, registered as ``peft_type="LIGO"``."""

from peft.mapping import PEFT_TYPE_TO_TUNER_MAPPING
from peft.utils import register_peft_method

from .config import LiGOConfig
from .layer import GrowthStage, LiGOOperator, SourceWeights, WidthFactor
from .model import (
    ArchitectureMismatchError,
    GlobalStateError,
    LiGOModel,
    LosslessGrowthWarning,
    check_state_dict,
    initial_global_stage,
    load_source_model,
    materialize_meta_parameters,
    validate_global_state,
)
from .peft_type import LIGO_PEFT_TYPE
from .shapes import GrowthShapeError, ModelShape, TransformerWeights

if LIGO_PEFT_TYPE not in PEFT_TYPE_TO_TUNER_MAPPING:
    register_peft_method(name="ligo", config_cls=LiGOConfig, model_cls=LiGOModel, prefix=LiGOModel.prefix)

__all__ = [
    "ArchitectureMismatchError",
    "GlobalStateError",
    "GrowthShapeError",
    "GrowthStage",
    "LiGOConfig",
    "LiGOModel",
    "LiGOOperator",
    "LosslessGrowthWarning",
    "ModelShape",
    "SourceWeights",
    "TransformerWeights",
    "WidthFactor",
    "check_state_dict",
    "initial_global_stage",
    "load_source_model",
    "materialize_meta_parameters",
    "validate_global_state",
]
