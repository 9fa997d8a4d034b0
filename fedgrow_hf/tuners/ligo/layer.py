"""The modules LiGO adds to a model: width factors, growth stages and the (Dual-)LiGO operator.

A *growth stage* is one learned linear map from the weights of a transformer of shape A to the
weights of a transformer of shape B (LiGO, arXiv 2303.00980):

* depth: a matrix ``depth`` (L_B x L_A) mixes the A blocks into B blocks;
* width: every growable tensor axis is multiplied by an expansion factor of its space. Axes that
  *produce* vectors of the space use the space's ``out`` factor, axes that *consume* them use its
  ``in`` factor, so a weight W (out x in) becomes ``A_out W A_in^T``. The residual stream has one
  pair of factors for the whole model; query/key/value/FFN spaces have one pair per B block.

Each factor is a Kronecker product ``group (x) unit`` whose groups are the attention heads
(``width_structure="head_kronecker"``): target head h is a learned mix of source heads, each widened
by one learned per-head map. That keeps heads heads, and keeps the operator -- which is what
Fed-Grow sends over the network -- a small fraction of the target model. ``"dense"`` uses one full
matrix per factor instead, as in the LiGO paper.

Depth is mixed *before* width is expanded (both are linear, so this is the same family of
operators). Mixing the small weights first costs L_B small mixes instead of L_B x L_A large ones,
and lets every target block be grown on its own, which is what low-memory materialisation relies on.

Dual-LiGO (Fed-Grow, arXiv 2406.13450) is two stages in a row: a private Local stage maps a
participant's source to a common intermediate shape, a shared Global stage maps that to the target.
Plain LiGO is the same operator without Local stages.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping, Sequence

import torch
from torch import nn
from tqdm.auto import tqdm

from ...architectures import ArchitectureTable, Axis, Side, Space
from .shapes import ModelShape, TransformerWeights


def duplication_factors(n_out: int, n_in: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Net2Net/bert2BERT duplication: an expansion ``E`` and the contraction ``C`` with ``C^T E = I``.

    Output unit i copies input unit ``i mod n_in``; the contraction divides each copy by the number
    of copies, so a consumer of the duplicated vector computes exactly what it computed before. When
    ``n_out < n_in`` (fewer target heads than source heads) the extra inputs are dropped.
    """
    expand = torch.zeros(n_out, n_in)
    rows = torch.arange(n_out)
    cols = rows % n_in
    expand[rows, cols] = 1.0
    counts = expand.sum(0).clamp(min=1.0)
    return expand, expand / counts


def depth_init(n_out: int, n_in: int, method: str) -> torch.Tensor:
    """LiGO's depth initialisations: ``stack`` repeats the source stack (StackBERT), ``interpolate``
    repeats each source block in place. Both are the identity when depths are equal."""
    weight = torch.zeros(n_out, n_in)
    rows = torch.arange(n_out)
    if method == "stack":
        cols = rows % n_in
    elif method == "interpolate":
        cols = (rows * n_in) // n_out
    else:
        raise ValueError(f"unknown depth_init {method!r}; expected 'stack' or 'interpolate'")
    weight[rows, cols] = 1.0
    return weight


def apply_kronecker(tensor: torch.Tensor, dim: int, group: torch.Tensor, unit: torch.Tensor) -> torch.Tensor:
    """Multiply axis ``dim`` of ``tensor`` by ``group (x) unit`` without forming the Kronecker product.

    ``tensor`` has a leading layer axis. The factors are either shared by all layers
    (``group``: G_out x G_in) or given per layer (``group``: L x G_out x G_in); likewise ``unit``.
    The axis is split in place (a view, no copy) and the two factors are applied in the order that
    keeps the intermediate result smaller, which is what dominates time and peak memory for the
    large tensors (embedding tables).
    """
    shape = tensor.shape
    (g_out, g_in), (u_out, u_in) = group.shape[-2:], unit.shape[-2:]
    blocks = tensor.reshape(*shape[:dim], g_in, u_in, *shape[dim + 1 :])
    letters = [chr(ord("a") + i) for i in range(blocks.dim())]
    batch = letters[0] if group.dim() == 3 else ""

    def contract(operand: torch.Tensor, factor: torch.Tensor, position: int) -> torch.Tensor:
        result = letters.copy()
        result[position] = "z"
        equation = f"{''.join(letters)},{batch}z{letters[position]}->{''.join(result)}"
        return torch.einsum(equation, operand, factor)

    if g_out * u_in <= g_in * u_out:
        blocks = contract(contract(blocks, group, dim), unit, dim + 1)
    else:
        blocks = contract(contract(blocks, unit, dim + 1), group, dim)
    return blocks.reshape(*shape[:dim], g_out * u_out, *shape[dim + 1 :])


class WidthFactor(nn.Module):
    """One expansion factor ``group (x) unit`` of one space, for one side (``out`` or ``in``)."""

    def __init__(self, groups: tuple[int, int], units: tuple[int, int], num_layers: int | None) -> None:
        super().__init__()
        lead = () if num_layers is None else (num_layers,)
        self.group = nn.Parameter(torch.empty(*lead, *groups))
        self.unit = nn.Parameter(torch.empty(*lead, *units))

    def matrix(self) -> torch.Tensor:
        """The full expansion matrix (for inspection and tests; the forward pass never forms it)."""
        if self.group.dim() == 3:
            return torch.stack([torch.kron(g, u) for g, u in zip(self.group, self.unit)])
        return torch.kron(self.group, self.unit)


def factor_key(axis: Axis) -> str:
    return f"{axis.space.value}_{axis.side.value}"


class GrowthStage(nn.Module):
    """A learned linear map from the weights of a transformer of shape ``source`` to shape ``target``.

    Its parameters (and so its state-dict keys and shapes) depend only on the table and the two
    shapes -- which is what lets participants with different sources share a Global stage.
    """

    def __init__(
        self, table: ArchitectureTable, source: ModelShape, target: ModelShape, width_structure: str = "head_kronecker"
    ) -> None:
        super().__init__()
        if width_structure not in ("head_kronecker", "dense"):
            raise ValueError(f"unknown width_structure {width_structure!r}; expected 'head_kronecker' or 'dense'")
        self.table = table
        self.source_shape = source
        self.target_shape = target
        self.width_structure = width_structure
        self.shared_axes = table.shared_axes
        self.layer_axes = table.layer_axes
        self.depth = nn.Parameter(torch.empty(target.num_layers, source.num_layers))
        axes = {axis for spec in (*self.shared_axes.values(), *self.layer_axes.values()) for axis in spec.values()}
        self.width = nn.ModuleDict()
        for axis in sorted(axes, key=factor_key):
            groups, units = self._factor_sizes(axis.space)
            num_layers = target.num_layers if axis.space.per_layer else None
            self.width[factor_key(axis)] = WidthFactor(groups, units, num_layers)
        self.reset_parameters()

    def _factor_sizes(self, space: Space) -> tuple[tuple[int, int], tuple[int, int]]:
        if self.width_structure == "dense":
            return (1, 1), (self.target_shape.size(space), self.source_shape.size(space))
        g_out, g_in = self.target_shape.head_groups(space), self.source_shape.head_groups(space)
        return (g_out, g_in), (self.target_shape.size(space) // g_out, self.source_shape.size(space) // g_in)

    @torch.no_grad()
    def reset_parameters(
        self, width_init: str = "duplicate", depth_method: str = "stack", noise_std: float = 0.0, seed: int = 0
    ) -> None:
        """Initialise from the source's knowledge (duplication + stacking) or at random.

        Duplication is done head-wise whatever ``width_structure`` stores, and query factors are
        scaled by ``sqrt(d_in / d_out)`` so that attention logits, which the target divides by
        ``sqrt(d_out)``, equal the source's. With integer growth factors in every space and equal
        depth this makes the grown model compute exactly what the source computes.
        """
        generator = torch.Generator().manual_seed(seed)
        self.depth.copy_(depth_init(*self.depth.shape, depth_method))
        for key, factor in self.width.items():
            space, side = Space(key.rsplit("_", 1)[0]), Side(key.rsplit("_", 1)[1])
            if width_init == "duplicate":
                group, unit = self._duplication(space, side)
            elif width_init == "random":
                group = torch.randn(factor.group.shape[-2:], generator=generator) / math.sqrt(factor.group.shape[-1])
                unit = torch.randn(factor.unit.shape[-2:], generator=generator) / math.sqrt(factor.unit.shape[-1])
            else:
                raise ValueError(f"unknown width_init {width_init!r}; expected 'duplicate' or 'random'")
            if noise_std:
                unit = unit + noise_std * torch.randn(unit.shape, generator=generator)
            factor.group.copy_(group.expand_as(factor.group))
            factor.unit.copy_(unit.expand_as(factor.unit))

    def _duplication(self, space: Space, side: Side) -> tuple[torch.Tensor, torch.Tensor]:
        g_out, g_in = self.target_shape.head_groups(space), self.source_shape.head_groups(space)
        u_out, u_in = self.target_shape.size(space) // g_out, self.source_shape.size(space) // g_in
        group_expand, group_contract = duplication_factors(g_out, g_in)
        unit_expand, unit_contract = duplication_factors(u_out, u_in)
        group, unit = (group_expand, unit_expand) if side is Side.OUT else (group_contract, unit_contract)
        if space is Space.QUERY:
            unit = unit * math.sqrt(u_in / u_out)
        if self.width_structure == "dense":
            return torch.ones(1, 1), torch.kron(group, unit)
        return group, unit

    def forward(self, weights: TransformerWeights, layers: Sequence[int] | None = None) -> TransformerWeights:
        """Grow ``weights``; with ``layers``, grow only those target blocks (shared tensors included)."""
        index = None if layers is None else torch.as_tensor(list(layers), dtype=torch.long, device=self.depth.device)
        depth = self.depth if index is None else self.depth.index_select(0, index)
        shared = {
            name: self._expand(tensor.unsqueeze(0), self.shared_axes[name], None).squeeze(0)
            for name, tensor in weights.shared.items()
        }
        grown_layers = {}
        for name, stacked in weights.layers.items():
            mixed = torch.einsum("lj,j...->l...", depth.to(stacked.dtype), stacked)
            grown_layers[name] = self._expand(mixed, self.layer_axes[name], index)
        return TransformerWeights(shared, grown_layers)

    def _expand(self, tensor: torch.Tensor, axes: Mapping[int, Axis], index: torch.Tensor | None) -> torch.Tensor:
        for axis_index, axis in axes.items():
            dim = axis_index + 1 if axis_index >= 0 else tensor.dim() + axis_index
            factor = self.width[factor_key(axis)]
            group, unit = factor.group.to(tensor.dtype), factor.unit.to(tensor.dtype)
            if axis.space.per_layer and index is not None:
                group, unit = group.index_select(0, index), unit.index_select(0, index)
            tensor = apply_kronecker(tensor, dim, group, unit)
        return tensor

    def extra_repr(self) -> str:
        return f"{self.source_shape} -> {self.target_shape}, width_structure={self.width_structure!r}"


class SourceWeights(nn.Module):
    """A source model's growable weights, frozen, as non-persistent buffers.

    Buffers follow the model across devices and dtypes, and non-persistent ones never reach a state
    dict -- so source weights cannot end up in an adapter file or a federated message.
    """

    def __init__(self, weights: TransformerWeights, shape: ModelShape, name_or_path: str) -> None:
        super().__init__()
        self.shape = shape
        self.name_or_path = name_or_path
        self._shared_names = list(weights.shared)
        self._layer_names = list(weights.layers)
        for name, tensor in weights.shared.items():
            self.register_buffer(self._buffer_name("shared", name), tensor, persistent=False)
        for name, tensor in weights.layers.items():
            self.register_buffer(self._buffer_name("layers", name), tensor, persistent=False)

    @staticmethod
    def _buffer_name(kind: str, name: str) -> str:
        return f"{kind}__{name.replace('.', '__')}"

    def weights(self) -> TransformerWeights:
        return TransformerWeights(
            {name: getattr(self, self._buffer_name("shared", name)) for name in self._shared_names},
            {name: getattr(self, self._buffer_name("layers", name)) for name in self._layer_names},
        )

    def extra_repr(self) -> str:
        return f"{self.name_or_path!r}: {self.shape}"


class LiGOOperator(nn.Module):
    """The whole growth operator of one adapter: sources -> [Local stages] -> Global stage -> target."""

    def __init__(
        self,
        table: ArchitectureTable,
        sources: list[SourceWeights],
        target: ModelShape,
        intermediate: ModelShape | None,
        width_structure: str,
    ) -> None:
        super().__init__()
        self.sources = nn.ModuleList(sources)
        if intermediate is None:
            if len(sources) != 1:
                raise ValueError(
                    f"{len(sources)} source models need a common intermediate shape: set "
                    "LiGOConfig.intermediate_config (Dual-LiGO)"
                )
            self.local_stages = None
            global_source = sources[0].shape
        else:
            for source in sources:
                source.shape.check_can_grow_to(intermediate, what="intermediate")
            self.local_stages = nn.ModuleList(
                GrowthStage(table, source.shape, intermediate, width_structure) for source in sources
            )
            global_source = intermediate
        global_source.check_can_grow_to(target)
        self.global_stage = GrowthStage(table, global_source, target, width_structure)

    def reset_parameters(self, width_init: str, depth_method: str, noise_std: float, seed: int) -> None:
        for offset, stage in enumerate(self.stages()):
            stage.reset_parameters(width_init, depth_method, noise_std, seed + offset)

    def stages(self) -> list[GrowthStage]:
        return [*(self.local_stages or []), self.global_stage]

    def intermediate_weights(self) -> TransformerWeights:
        """What the Global stage consumes: the (averaged) Local outputs, or the source itself."""
        if self.local_stages is None:
            return self.sources[0].weights()
        return TransformerWeights.mean([stage(source.weights()) for stage, source in zip(self.local_stages, self.sources)])

    def forward(self, layers: Sequence[int] | None = None) -> TransformerWeights:
        return self.global_stage(self.intermediate_weights(), layers)

    @torch.no_grad()
    def grow_blockwise(self, progressbar: bool = False) -> Iterator[tuple[int | None, TransformerWeights]]:
        """Yield the grown target piece by piece: ``(None, shared tensors)``, then ``(i, block i)``.

        Merging and exporting consume this instead of ``forward()`` so that at most one grown block
        exists next to the target being filled: the whole grown copy never does.
        """
        intermediate = self.intermediate_weights()
        yield None, self.global_stage(TransformerWeights(intermediate.shared, {}))
        layers = range(self.global_stage.target_shape.num_layers)
        for layer in tqdm(layers, disable=not progressbar, desc="Growing target layers"):
            yield layer, self.global_stage(TransformerWeights({}, intermediate.layers), layers=[layer])
