"""Model shapes and stacked weights: the data LiGO's operator consumes and produces."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import torch
from torch import nn
from transformers import PretrainedConfig

from ...architectures import ArchitectureTable

SHAPE_FIELDS = ("num_hidden_layers", "hidden_size", "intermediate_size", "num_attention_heads")
# Written (and required) only where they differ from their default: one key/value head per query head,
# heads of hidden // heads.
OPTIONAL_SHAPE_FIELDS = ("num_key_value_heads", "head_dim")


class GrowthShapeError(ValueError):
    """Source, intermediate and target shapes do not describe a valid growth."""


@dataclass(frozen=True)
class ModelShape:
    """The numbers that fix a transformer's parameter shapes.

    ``kv_heads`` (key/value heads of grouped-query attention) defaults to ``heads``, ``head_dim`` to
    ``hidden // heads``: a BERT/ViT/GPT-2 shape is the first four numbers.
    """

    num_layers: int
    hidden: int
    ffn: int
    heads: int
    kv_heads: int | None = None
    head_dim: int | None = None

    def __post_init__(self) -> None:
        if self.kv_heads is None:
            object.__setattr__(self, "kv_heads", self.heads)
        if self.head_dim is None:
            if self.heads > 0 and self.hidden % self.heads:
                raise GrowthShapeError(f"hidden size {self.hidden} is not divisible by {self.heads} attention heads")
            object.__setattr__(self, "head_dim", self.hidden // max(self.heads, 1))
        if min(self.num_layers, self.hidden, self.ffn, self.heads, self.kv_heads, self.head_dim) < 1:
            raise GrowthShapeError(f"every size must be positive, got {self}")
        if self.heads % self.kv_heads:
            raise GrowthShapeError(f"{self.heads} attention heads do not form groups of {self.kv_heads} key/value heads")

    @classmethod
    def from_config(cls, config: PretrainedConfig | Mapping[str, int], table: ArchitectureTable) -> ModelShape:
        """The shape of a model config, or of a config dict in its own field names (``target_config``) or in
        :data:`SHAPE_FIELDS` (``intermediate_config``: the same names for every architecture)."""
        fields = table.fields
        names = (fields.num_layers, fields.hidden, fields.ffn, fields.heads, fields.kv_heads, fields.head_dim)
        if isinstance(config, Mapping) and all(name in config for name in SHAPE_FIELDS):
            names = (*SHAPE_FIELDS, *OPTIONAL_SHAPE_FIELDS)

        def get(name: str) -> int | None:
            return config.get(name) if isinstance(config, Mapping) else getattr(config, name, None)

        num_layers, hidden, ffn, heads, kv_heads, head_dim = (None if name is None else get(name) for name in names)
        if ffn is None and fields.ffn_multiple_when_unset and hidden is not None:
            ffn = fields.ffn_multiple_when_unset * hidden
        values = {"num_layers": num_layers, "hidden": hidden, "ffn": ffn, "heads": heads}
        missing = [name for name, value in values.items() if value is None]
        if missing:
            raise GrowthShapeError(f"config lacks the shape fields {missing} ({fields})")
        optional = {"kv_heads": kv_heads, "head_dim": head_dim}
        return cls(**{name: int(value) for name, value in {**values, **optional}.items() if value is not None})

    def to_config_dict(self) -> dict[str, int]:
        """The shape as config fields (the form ``LiGOConfig.intermediate_config`` stores); the optional
        fields only where they are not their defaults."""
        shape = dict(zip(SHAPE_FIELDS, (self.num_layers, self.hidden, self.ffn, self.heads)))
        if self.kv_heads != self.heads:
            shape["num_key_value_heads"] = self.kv_heads
        if self.head_dim * self.heads != self.hidden:
            shape["head_dim"] = self.head_dim
        return shape

    def check_can_grow_to(self, target: ModelShape, what: str = "target") -> None:
        """Raise unless ``target`` is at least as deep, as wide and as wide in its FFN as ``self``.

        Head counts may change either way: heads are regrouped by the operator, not copied.
        """
        smaller = [name for name in ("num_layers", "hidden", "ffn") if getattr(target, name) < getattr(self, name)]
        if smaller:
            raise GrowthShapeError(
                f"the {what} ({target}) is smaller than its source ({self}) in {smaller}; LiGO only grows models"
            )


@dataclass
class TransformerWeights:
    """A transformer's growable weights in a layout the operator can batch over.

    ``shared`` holds tensors outside the blocks by their path in the base model; ``layers`` holds, for
    every parameter path inside a block, the tensors of all blocks stacked on a leading layer axis.
    """

    shared: dict[str, torch.Tensor]
    layers: dict[str, torch.Tensor]

    @property
    def num_layers(self) -> int:
        return next(iter(self.layers.values())).shape[0] if self.layers else 0

    def unbind_layers(self) -> dict[str, tuple[torch.Tensor, ...]]:
        return {name: stacked.unbind(0) for name, stacked in self.layers.items()}

    def take_rows(self, rows: Mapping[str, torch.Tensor]) -> TransformerWeights:
        """The same weights with only ``rows[name]`` (row numbers) of each shared tensor named in ``rows``."""
        shared = {name: tensor.index_select(0, rows[name]) if name in rows else tensor for name, tensor in self.shared.items()}
        return TransformerWeights(shared, self.layers)

    def to(self, dtype: torch.dtype) -> TransformerWeights:
        return TransformerWeights(
            {k: v.to(dtype) for k, v in self.shared.items()}, {k: v.to(dtype) for k, v in self.layers.items()}
        )

    @classmethod
    def from_base_model(
        cls, base_model: nn.Module, table: ArchitectureTable, shared_names: list[str], layer_names: list[str],
        head_model: nn.Module | None = None, head_names: Sequence[str] = (),
    ) -> TransformerWeights:
        """Copies of ``base_model``'s growable weights (block parameters stacked), sharing no storage with it:
        the operator's source stays fixed whatever later happens to the model handed in, and a source
        loaded from a memory-mapped checkpoint releases its file once the model is dropped. ``head_names``:
        the task-head parameters (``table.head_roles``, paths in ``head_model``, the whole model) grown too."""
        params = dict(base_model.named_parameters(remove_duplicate=False))  # a tied head is its own path too
        blocks = base_model.get_submodule(table.layers_path)
        shared = {name: params[name].detach().clone() for name in shared_names}
        shared.update({name: head_model.get_parameter(name).detach().clone() for name in head_names})
        layers = {}
        for name in layer_names:
            layers[name] = torch.stack([block.get_parameter(name).detach() for block in blocks])
        return cls(shared, layers)

    def to_state_dict(self) -> dict[str, torch.Tensor]:
        """One flat dict (``shared.<path>``, ``layers.<path>``): how the weights travel and are saved."""
        return {**{f"shared.{k}": v for k, v in self.shared.items()}, **{f"layers.{k}": v for k, v in self.layers.items()}}

    @classmethod
    def from_state_dict(cls, state: Mapping[str, torch.Tensor]) -> TransformerWeights:
        """The inverse of :meth:`to_state_dict`."""
        kinds: dict[str, dict[str, torch.Tensor]] = {"shared": {}, "layers": {}}
        for key, value in state.items():
            kind, _, name = key.partition(".")
            if kind not in kinds or not name:
                raise GrowthShapeError(f"{key!r} is not a shared.<path> or layers.<path> weight")
            kinds[kind][name] = value
        return cls(kinds["shared"], kinds["layers"])

    @staticmethod
    def mean(weights: list[TransformerWeights]) -> TransformerWeights:
        """Average several same-shaped weight sets (several sources meeting at the intermediate shape)."""
        if len(weights) == 1:
            return weights[0]
        first = weights[0]
        return TransformerWeights(
            {k: torch.stack([w.shared[k] for w in weights]).mean(0) for k in first.shared},
            {k: torch.stack([w.layers[k] for w in weights]).mean(0) for k in first.layers},
        )
