"""fedgrow-hf: grow large transformers from heterogeneous small ones (LiGO, Dual-LiGO, Fed-Grow).

Importing the package registers LiGO with PEFT (``peft_type="LIGO"``), so ``get_peft_model``,
``PeftConfig.from_pretrained`` and ``PeftModel.from_pretrained`` know it. The core imports neither
Flower nor Ray; federated parts live in ``fedgrow_hf.federated``.
"""

from .architectures import (
    ArchitectureTable,
    Role,
    Space,
    UnsupportedArchitectureError,
    get_architecture_table,
)
from .growth import grow
from .recipe import grow_and_train
from .tuners.ligo import (
    ArchitectureMismatchError,
    GlobalStateError,
    GrowthShapeError,
    LiGOConfig,
    LiGOModel,
    LosslessGrowthWarning,
    ModelShape,
)

__version__ = "0.1.0"

__all__ = [
    "ArchitectureMismatchError",
    "ArchitectureTable",
    "GlobalStateError",
    "GrowthShapeError",
    "LiGOConfig",
    "LiGOModel",
    "LosslessGrowthWarning",
    "ModelShape",
    "Role",
    "Space",
    "UnsupportedArchitectureError",
    "get_architecture_table",
    "grow",
    "grow_and_train",
]
