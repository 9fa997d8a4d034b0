"""Model shapes and stacked weights: the data LiGO's operator consumes and produces."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import torch
from torch import nn
from transformers import PretrainedConfig

from ...architectures import ArchitectureTable

SHAPE_FIELDS = ("num_hidden_layers", "hidden_size", "intermediate_size", "num_attention_heads")


class GrowthShapeError(ValueError):
    """Source, intermediate and target shapes do not describe a valid growth."""


@dataclass(frozen=True)
class ModelShape:
    """The four numbers that fix a BERT/ViT-style transformer's parameter shapes."""

    num_layers: int
    hidden: int
    ffn: int
    heads: int

    def __post_init__(self) -> None:
        if min(self.num_layers, self.hidden, self.ffn, self.heads) < 1:
            raise GrowthShapeError(f"every size must be positive, got {self}")
        if self.hidden % self.heads:
            raise GrowthShapeError(f"hidden size {self.hidden} is not divisible by {self.heads} attention heads")

    @classmethod
    def from_config(cls, config: PretrainedConfig | Mapping[str, int], table: ArchitectureTable) -> ModelShape:
        get = config.get if isinstance(config, Mapping) else lambda name: getattr(config, name, None)
        fields = table.fields
        values = {
            "num_layers": get(fields.num_layers),
            "hidden": get(fields.hidden),
            "ffn": get(fields.ffn),
            "heads": get(fields.heads),
        }
        missing = [name for name, value in values.items() if value is None]
        if missing:
            raise GrowthShapeError(f"config lacks the shape fields {missing} ({fields})")
        return cls(**{name: int(value) for name, value in values.items()})

    def to_config_dict(self) -> dict[str, int]:
        """The shape as config fields (the form ``LiGOConfig.intermediate_config`` stores)."""
        return dict(zip(SHAPE_FIELDS, (self.num_layers, self.hidden, self.ffn, self.heads)))

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

    def to(self, dtype: torch.dtype) -> TransformerWeights:
        return TransformerWeights(
            {k: v.to(dtype) for k, v in self.shared.items()}, {k: v.to(dtype) for k, v in self.layers.items()}
        )

    @classmethod
    def from_base_model(
        cls, base_model: nn.Module, table: ArchitectureTable, shared_names: list[str], layer_names: list[str]
    ) -> TransformerWeights:
        """Copies of ``base_model``'s growable weights (block parameters stacked), sharing no storage with it:
        the operator's source stays fixed whatever later happens to the model handed in, and a source
        loaded from a memory-mapped checkpoint releases its file once the model is dropped."""
        params = dict(base_model.named_parameters())
        blocks = base_model.get_submodule(table.layers_path)
        shared = {name: params[name].detach().clone() for name in shared_names}
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
