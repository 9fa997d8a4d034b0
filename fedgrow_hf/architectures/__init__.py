"""Architecture role tables, one per supported transformers ``model_type``."""

from __future__ import annotations

from transformers import PretrainedConfig

from .bert import BERT_TABLE
from .gpt2 import GPT2_TABLE
from .llama import LLAMA_TABLE, QWEN2_TABLE
from .table import (
    NORMS,
    RESIDUAL_WRITERS,
    ROLE_AXES,
    ArchitectureTable,
    Axis,
    AxisSpec,
    ConfigFields,
    Fused,
    Role,
    Side,
    Space,
    Transposed,
    axes_in,
)
from .vit import VIT_TABLE

ARCHITECTURE_TABLES: dict[str, ArchitectureTable] = {
    table.model_type: table for table in (BERT_TABLE, VIT_TABLE, LLAMA_TABLE, QWEN2_TABLE, GPT2_TABLE)
}


class UnsupportedArchitectureError(ValueError):
    """The model's architecture has no LiGO role table."""


def get_architecture_table(config: PretrainedConfig | str) -> ArchitectureTable:
    """Return the role table for a config (or a ``model_type`` string)."""
    model_type = config if isinstance(config, str) else getattr(config, "model_type", None)
    try:
        return ARCHITECTURE_TABLES[model_type]
    except KeyError:
        raise UnsupportedArchitectureError(
            f"LiGO has no role table for model_type {model_type!r}; supported: {sorted(ARCHITECTURE_TABLES)}. "
            "Adding one is a new ArchitectureTable in fedgrow_hf/architectures/."
        ) from None


__all__ = [
    "ARCHITECTURE_TABLES",
    "NORMS",
    "RESIDUAL_WRITERS",
    "ROLE_AXES",
    "ArchitectureTable",
    "Axis",
    "AxisSpec",
    "ConfigFields",
    "Fused",
    "Role",
    "Side",
    "Space",
    "Transposed",
    "UnsupportedArchitectureError",
    "axes_in",
    "get_architecture_table",
]
