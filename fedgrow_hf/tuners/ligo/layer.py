"""The modules LiGO adds to a model: width factors, growth stages and the (Dual-)LiGO operator.

A *growth stage* is one learned linear map from the weights of a transformer of shape A to the
weights of a transformer of shape B (LiGO, arXiv 2303.00980):

* depth: a matrix (L_B x L_A) per block parameter mixes the A blocks into B blocks, plus a learned
  constant on block LayerNorm gains (what lets a new block start as the identity);
* width: every growable tensor axis is multiplied by an expansion factor of its space. Axes that
  *produce* vectors of the space use the space's ``out`` factor, axes that *consume* them use its
  ``in`` factor, so a weight W (out x in) becomes ``A_out W A_in^T``. The residual stream has one
  pair of factors for the whole model; query/key/value/FFN spaces have one pair per B block.

Per-layer factors are Kronecker products ``group (x) unit`` (``width_structure="head_kronecker"``):
for attention the groups are heads (target head h is a learned mix of source heads, each widened by
one learned per-head map), for the FFN blocks of neurons. That keeps heads heads, and keeps the
operator -- which is what Fed-Grow sends over the network -- a small fraction of the target model.
The residual factors (once per model) are full matrices, as is any factor whose Kronecker form would cap
its rank below the source size (:class:`SpaceLayout`): attention spaces whose target has fewer heads, unless
``width_structure="head_groups"`` takes k source heads side by side into each target head k times as wide.
``"dense"`` uses full matrices everywhere, as in the LiGO paper. The default initialisation is lossless (:mod:`.initialization`).

Depth mixing and width expansion are both linear, so they can run in either order; the order only sets
the cost. Factors shared by every block (the residual stream's) are applied to the L_A source blocks
*before* depth mixing whenever at least L_A target blocks are grown: the largest contractions (a
weight's residual side) then run L_A times instead of L_B times, and on the frozen source, so the
backward pass computes only their factor's gradient, not one for their input (a training step's
operator cost halves for MiniLM -> BERT L8/H512). Per-block factors can only follow the mix. Growing
one block (a merge) mixes first: one block's worth of expansion, whatever L_A. Within each side of the
mix, a tensor's axes are expanded in the order with the fewest multiply-adds (:func:`expansion_order`).
A training pass may leave a weight's residual side unexpanded altogether: ``(A_out W A_in^T)`` applied to
``x`` is ``((x A_in) W^T) A_out^T``, so where a token costs fewer multiply-adds through the source's width
(a wider target's FFN maps) the tuner applies the factor to the module's activations instead
(:class:`SourceWidthMap`).

Dual-LiGO (Fed-Grow, arXiv 2406.13450) is two stages in a row: a private Local stage maps a
participant's source to a common intermediate shape, a shared Global stage maps that to the target.
Plain LiGO is the same operator without Local stages.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Collection, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass

import torch
from torch import nn
from tqdm.auto import tqdm

from ...architectures import (
    NORMS,
    RESIDUAL_WRITERS,
    ArchitectureTable,
    Axis,
    AxisSpec,
    Fused,
    Role,
    Side,
    Space,
    axes_in,
)
from .config import WIDTH_STEPS, WIDTH_STRUCTURES
from .initialization import (
    contraction,
    copy_matrix,
    expansion,
    grouped_query_heads,
    identity_depth_plan,
    norm_preserving_expansion,
    repeat_depth,
    split,
)
from .shapes import ModelShape, TransformerWeights

ROWS_PER_SLICE = 2048  # rows of an embedding table grown at once by a merge (see GrowthStage.grow_shared_by_rows)


def apply_kronecker(tensor: torch.Tensor, dim: int, group: torch.Tensor | None, unit: torch.Tensor) -> torch.Tensor:
    """Multiply axis ``dim`` of ``tensor`` by ``group (x) unit`` without forming the Kronecker product.

    ``tensor`` has a leading layer axis. The factors are either shared by all layers
    (``group``: G_out x G_in) or given per layer (``group``: L x G_out x G_in); likewise ``unit``.
    ``group=None`` means a single group: ``unit`` is the whole factor. The axis is split in place (a
    view, no copy) and the two factors are applied in the order that keeps the intermediate result
    smaller, which is what dominates time and peak memory for the large tensors (embedding tables).
    """
    if group is None:
        return _contract(tensor, unit, dim)
    shape = tensor.shape
    (g_out, g_in), (u_out, u_in) = group.shape[-2:], unit.shape[-2:]
    blocks = tensor.reshape(*shape[:dim], g_in, u_in, *shape[dim + 1 :])
    if _group_first(group.shape[-2:], unit.shape[-2:]):
        blocks = _contract(_contract(blocks, group, dim), unit, dim + 1)
    else:
        blocks = _contract(_contract(blocks, unit, dim + 1), group, dim)
    return blocks.reshape(*shape[:dim], g_out * u_out, *shape[dim + 1 :])


def _group_first(group: tuple[int, int], unit: tuple[int, int]) -> bool:
    """Whether :func:`apply_kronecker` applies the group factor before the unit factor: the order whose
    intermediate result (``g_out x u_in`` against ``g_in x u_out`` per element of the other axes) is smaller."""
    (g_out, g_in), (u_out, u_in) = group, unit
    return g_out * u_in <= g_in * u_out


def _contract(operand: torch.Tensor, factor: torch.Tensor, position: int) -> torch.Tensor:
    """Multiply axis ``position`` of ``operand`` (leading layer axis) by ``factor`` (Z x A, or L x Z x A per layer).

    As matrix products over views of ``operand`` (never a permuted copy of it, which an ``einsum`` over a
    middle axis makes, forward and backward): the axes before ``position`` are a batch, those after it the
    columns the factor multiplies; a last axis is contracted as ``rows @ factor^T``.
    """
    shape = operand.shape
    rows, size, columns = math.prod(shape[1:position]), shape[position], math.prod(shape[position + 1 :])
    if columns == 1:
        grown = operand.reshape(shape[0], rows, size) @ factor.transpose(-1, -2)
    else:
        per_layer = factor if factor.dim() == 2 else factor.unsqueeze(1)
        grown = per_layer @ operand.reshape(shape[0], rows, size, columns)
    return grown.reshape(*shape[:position], factor.shape[-2], *shape[position + 1 :])


class WidthFactor(nn.Module):
    """One expansion factor ``group (x) unit`` of one space, for one side (``out`` or ``in``).

    With ``width_step="fan_in"`` each factor is the start it was initialised to plus its parameter's
    offset from that start divided by the factor's fan-in: ``start + (param - start) / fan_in``, computed in
    one kernel as ``anchor + param / fan_in`` with ``anchor = start (1 - 1 / fan_in)``. Adam
    moves every element of a parameter by about the learning rate whatever its gradient's size, so a
    directly trained n x n factor (the residual stream's is 384 x 384 for MiniLM) changes by up to
    ``n x lr`` in spectral norm per step: ten Adam steps at 1e-4 on the operator of a grown MiniLM leave
    final [CLS] vectors with cosine below 0.9 to the source's (``tests/test_ligo_minilm.py``). Scaled by
    1/fan-in, a step changes each factor by about ``lr`` whatever the width (the muP rule for Adam). The parameters are
    still the Global-LiGO's keys with the factors' shapes and equal the factors at the start; the start
    is recomputed from the config (it is the same for every party) and never stored. ``plain`` trains
    the factors directly.
    """

    def __init__(
        self, groups: tuple[int, int], units: tuple[int, int], num_layers: int | None, width_step: str = "fan_in"
    ) -> None:
        super().__init__()
        if width_step not in WIDTH_STEPS:
            raise ValueError(f"unknown width_step {width_step!r}; expected one of {WIDTH_STEPS}")
        lead = () if num_layers is None else (num_layers,)
        self.group = nn.Parameter(torch.empty(*lead, *groups))
        self.unit = nn.Parameter(torch.empty(*lead, *units))
        self.register_buffer("group_anchor", torch.zeros(*lead, *groups), persistent=False)
        self.register_buffer("unit_anchor", torch.zeros(*lead, *units), persistent=False)
        self.width_step = width_step

    @torch.no_grad()
    def start_at(self, group: torch.Tensor, unit: torch.Tensor) -> None:
        """Set both the parameters and the start they are offsets from."""
        for param, anchor, value in ((self.group, self.group_anchor, group), (self.unit, self.unit_anchor, unit)):
            param.copy_(value.expand_as(param))
            anchor.copy_(param * (1 - 1 / param.shape[-1]))

    def factors(self, index: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """The ``group`` and ``unit`` factors the expansion applies.

        ``index`` (target block numbers) restricts a per-layer factor to those blocks before anything is
        computed, so growing one block (a merge) computes that block's factors only, not every block's.
        """
        def blocks(tensor: torch.Tensor) -> torch.Tensor:
            return tensor.index_select(0, index) if index is not None and tensor.dim() == 3 else tensor

        params = (blocks(self.group), blocks(self.unit))
        if self.width_step == "plain":
            return params
        anchors = (blocks(self.group_anchor), blocks(self.unit_anchor))
        return tuple(torch.add(anchor, param, alpha=1 / param.shape[-1]) for param, anchor in zip(params, anchors))

    @torch.no_grad()
    def bake(self) -> None:
        """Store the factors themselves in the parameters (``width_step`` becomes ``plain``) and drop the
        anchors: the same factors, at half the memory, for an operator that will not train again (a merge)."""
        for param, value in zip((self.group, self.unit), self.factors(), strict=True):
            param.copy_(value)
        self.width_step = "plain"
        self.group_anchor = self.unit_anchor = None

    def matrix(self) -> torch.Tensor:
        """The full expansion matrix (for inspection and tests; the forward pass never forms it)."""
        group, unit = self.factors()
        if group.dim() == 3:
            return torch.stack([torch.kron(g, u) for g, u in zip(group, unit)])
        return torch.kron(group, unit)

    def extra_repr(self) -> str:
        return f"width_step={self.width_step!r}"


def factor_key(axis: Axis) -> str:
    return f"{axis.space.value}_{axis.side.value}"


@dataclass(frozen=True)
class SpaceLayout:
    """How one space is grown: its natural groups and units, and how its factors are stored.

    Natural groups are attention heads for query/key/value (units: head dimensions; key/value heads for
    key and value), ``g`` blocks of neurons for the FFN and one group for the residual stream. Where the
    target has fewer, wider heads, ``head_groups`` makes ``merged_heads`` source heads side by side one source
    group (MiniLM's 12 heads of 32 as 6 of 64 for a target of 8 heads of 64): what the start puts in one target
    head (:meth:`lossless_factors`), and a group a target head can hold whole. Storage is ``group (x) unit`` over
    the natural groups when that cannot cap the expansion's rank below the source size
    (``min(groups) * min(units) >= source size``); otherwise -- fewer or narrower target heads that no such
    grouping fits, or ``dense`` -- one full matrix. Initial values are always defined over the natural groups.
    """

    groups: tuple[int, int]  # natural (target, source) group counts
    units: tuple[int, int]  # natural (target, source) units per group
    kronecker: bool
    obstacle: str | None = None
    # The source group each target group copies at the lossless start (default: ``i mod source groups``);
    # query heads under grouped-query attention follow their key/value heads (:func:`grouped_query_heads`).
    group_sources: tuple[int, ...] | None = None
    norm_preserving: bool = False  # the residual stream of an RMSNorm-ed model (:func:`norm_preserving_expansion`)
    merged_heads: int = 1  # source heads side by side in one natural source group (see above)

    @property
    def stored_groups(self) -> tuple[int, int]:
        return self.groups if self.kronecker else (1, 1)

    @property
    def stored_units(self) -> tuple[int, int]:
        if self.kronecker:
            return self.units
        return self.groups[0] * self.units[0], self.groups[1] * self.units[1]

    def lossless_factors(self, space: Space, side: Side, asymmetric: bool) -> tuple[torch.Tensor, torch.Tensor]:
        """Group and unit factors of the lossless start (:mod:`.initialization`), in storage form."""
        (g_out, g_in), (u_out, u_in) = self.groups, self.units
        if self.norm_preserving:
            producer, consumer = norm_preserving_expansion(g_out * u_out, g_in * u_in, asymmetric)
            return torch.ones(1, 1), consumer if side is Side.IN else producer
        # the target divides attention logits by sqrt(its head size), the source by sqrt(its own)
        scale = math.sqrt(u_out * self.merged_heads / u_in)
        group_copies = expansion(g_out, g_in) if self.group_sources is None else copy_matrix(self.group_sources, g_in)
        if self.obstacle and self.merged_heads == 1:  # no head-to-group map: copy every source unit (none is lost)
            (g_out, g_in), (u_out, u_in) = (1, 1), self.stored_units
            group_copies = expansion(1, 1)
        if side is Side.IN:
            group, unit = split(group_copies, asymmetric), contraction(u_out, u_in, asymmetric)
        elif space is Space.KEY:  # logits q'.k' = q.k: the key side contracts what the query side copies
            # heads side by side share a softmax, so no start is exact: the full factors' (a repeated group's
            # logits split over its copies) is kept, measured nearer the source's function than whole logits
            # (MiniLM -> BERT L8/H512: relative error 0.596 against 0.633; benchmarks/README.md, issue 28)
            group = split(group_copies, asymmetric) if self.merged_heads > 1 else group_copies
            unit = contraction(u_out, u_in, asymmetric)
        else:
            group, unit = group_copies, expansion(u_out, u_in)
        if space is Space.QUERY:
            unit = unit * scale
        if self.kronecker:
            return group, unit
        return torch.ones(1, 1), torch.kron(group, unit)


def space_layout(
    space: Space, source: ModelShape, target: ModelShape, width_structure: str, table: ArchitectureTable
) -> SpaceLayout:
    """The :class:`SpaceLayout` of ``space`` for a stage from ``source`` to ``target``."""
    kronecker = width_structure in ("head_kronecker", "head_groups")
    if space is Space.RESIDUAL:
        return SpaceLayout((1, 1), (target.hidden, source.hidden), kronecker=False, norm_preserving=table.rms_normalised)
    if space is Space.FFN:
        groups = _ffn_groups(source.ffn, target.ffn)
        return SpaceLayout((groups, groups), (target.ffn // groups, source.ffn // groups), kronecker)
    key_value = space in (Space.KEY, Space.VALUE)
    heads = (target.kv_heads, source.kv_heads) if key_value else (target.heads, source.heads)
    head_size = (target.head_dim, source.head_dim)
    grouped = source.kv_heads != source.heads or target.kv_heads != target.heads
    kind = "key/value" if key_value and grouped else "attention"
    obstacle = None
    if heads[0] < heads[1] or head_size[0] < head_size[1]:
        obstacle = (
            f"the target has {heads[0]} {kind} heads of {head_size[0]} where "
            f"the source has {heads[1]} of {head_size[1]}: fewer or narrower heads cannot compute the source's "
            "attention (every source head needs a target head at least as wide)"
        )
    merged = _merged_heads(heads, head_size) if obstacle and not grouped and width_structure == "head_groups" else 1
    if merged > 1:
        return SpaceLayout((heads[0], heads[1] // merged), (head_size[0], head_size[1] * merged), kronecker, obstacle,
                           merged_heads=merged)
    group_sources = None
    if not key_value:
        group_sources = tuple(grouped_query_heads(target.heads, target.kv_heads, source.heads, source.kv_heads))
    return SpaceLayout(heads, head_size, kronecker and obstacle is None, obstacle, group_sources)


def _merged_heads(heads: tuple[int, int], head_size: tuple[int, int]) -> int:
    """How many source heads sit side by side in one target head where the target has fewer, wider ones: the
    ratio of the head sizes, when it is a whole number that divides the source's heads into no more groups than
    the target has heads (the Kronecker factors over those groups then have the full matrix's rank and its
    start); else 1 (full factors)."""
    (target_heads, source_heads), (target_size, source_size) = heads, head_size
    merged = target_size // source_size
    if target_size % source_size or merged < 2 or source_heads % merged or source_heads // merged > target_heads:
        return 1
    return merged


def _ffn_groups(source: int, target: int) -> int:
    """FFN neurons are grouped in ``g`` blocks (g divides both sizes): ``g^2 + (target/g)(source/g)``
    factor entries, smallest near ``g = (source * target) ** 0.25``."""
    common = math.gcd(source, target)
    divisors = [g for g in range(1, common + 1) if common % g == 0]
    return min(divisors, key=lambda g: g * g + (target // g) * (source // g))


@dataclass(frozen=True)
class SourceWidthMap:
    """One side of a block's linear map that a training pass computes at its stage's source width.

    A grown weight is ``W' = A_out W A_in^T``, so ``x W'^T = ((x A_in) W^T) A_out^T``: a side whose factor is
    one full matrix shared by every block (the residual stream's) can be applied to the activations instead of
    the weight. The operator then leaves that axis of the weight (and, on the output side, of the bias) at the
    source's width, and the tuner multiplies the module's input by ``A_in`` (or its output by ``A_out^T``).
    That is chosen where a token costs fewer multiply-adds (:meth:`GrowthStage.source_width_maps`): an FFN
    map of MiniLM -> BERT L8/H512 costs ``512 x 384 + 384 x 2048`` per token instead of ``512 x 2048``, and
    the operator no longer expands the FFN weights' residual side at all, its largest expansion: a training
    step at 16 x 64 tokens falls from 1.32 x to 1.18 x the plain target's arithmetic (benchmarks/README.md,
    issue 28).
    """

    module: str  # module path inside a block
    side: Side
    factor: str  # the factor key (:func:`factor_key`) applied to the activations
    tensors: tuple[tuple[str, int], ...]  # (block tensor, its axis left at the source's width)


class GrowthStage(nn.Module):
    """A learned linear map from the weights of a transformer of shape ``source`` to shape ``target``.

    Its parameters (and so its state-dict keys and shapes) depend only on the table and the two
    shapes -- which is what lets participants with different sources share a Global stage:

    * ``depth`` (P x L_B x L_A): one depth mix per block parameter, so that a new block can start as the
      identity (zero residual writers, plain norms) while its other weights copy a source block;
    * ``norm_offset`` (N x L_B): a constant added to every block LayerNorm gain -- what makes a plain
      normalisation (gain 1) reachable, which a post-LN identity block needs;
    * ``width``: one :class:`WidthFactor` per space and side (see :func:`space_layout`).
    """

    def __init__(
        self, table: ArchitectureTable, source: ModelShape, target: ModelShape, width_structure: str = "head_kronecker",
        width_step: str = "fan_in",
    ) -> None:
        super().__init__()
        if width_structure not in WIDTH_STRUCTURES:
            raise ValueError(f"unknown width_structure {width_structure!r}; expected one of {WIDTH_STRUCTURES}")
        self.table = table
        self.source_shape = source
        self.target_shape = target
        self.width_structure = width_structure
        self.shared_axes = table.grown_axes  # the heads' too: grown only where a source's head was taken
        self.layer_axes = table.layer_axes
        self.layer_names = list(self.layer_axes)
        self.norm_gains = [name for name in table.layer_parameters_of(*NORMS) if name.endswith("weight")]
        self.depth = nn.Parameter(torch.empty(len(self.layer_names), target.num_layers, source.num_layers))
        self.norm_offset = nn.Parameter(torch.empty(len(self.norm_gains), target.num_layers))
        axes = {
            axis
            for tensor_axes in (*self.shared_axes.values(), *self.layer_axes.values())
            for spec in tensor_axes.values()
            for axis in axes_in(spec)
        }
        self.layouts = {
            space: space_layout(space, source, target, width_structure, table) for space in {a.space for a in axes}
        }
        self.width = nn.ModuleDict()
        for axis in sorted(axes, key=factor_key):
            layout = self.layouts[axis.space]
            num_layers = target.num_layers if axis.space.per_layer else None
            self.width[factor_key(axis)] = WidthFactor(layout.stored_groups, layout.stored_units, num_layers, width_step)
        self.reset_parameters()

    def lossless_obstacles(self) -> list[str]:
        """Why this stage's shapes rule out computing the source's function exactly (empty: they don't)."""
        reasons = list(dict.fromkeys(layout.obstacle for layout in self.layouts.values() if layout.obstacle))
        source, target = self.source_shape, self.target_shape
        if not reasons and len(set(self.layouts[Space.QUERY].group_sources)) < source.heads:
            reasons.append(
                f"{target.heads} query heads in {target.kv_heads} key/value groups cannot hold a copy of each of the "
                f"source's {source.heads} query heads in {source.kv_heads} groups next to a copy of its key/value head "
                "(give each source group at least as many target query heads as it has)"
            )
        if target.hidden % source.hidden and not self.table.rms_normalised:
            reasons.append(
                f"the residual stream grows {source.hidden} -> {target.hidden}, not a multiple: a LayerNorm over it "
                "cannot keep its statistics (use a multiple of the source width for an exact start)"
            )
        if self.table.rotary and target.head_dim != source.head_dim:
            reasons.append(
                f"head_dim changes {source.head_dim} -> {target.head_dim} under rotary position embeddings: a head "
                "is rotated at frequencies set by its size, so no target head attends like a source head (keep "
                "head_dim, e.g. grow num_attention_heads with hidden_size, for an exact start)"
            )
        return reasons

    @torch.no_grad()
    def reset_parameters(
        self, width_init: str = "lossless", depth_method: str = "identity", noise_std: float = 0.0, seed: int = 0
    ) -> None:
        """Initialise from the source's knowledge (see :mod:`.initialization`) or at random.

        ``lossless`` + ``identity`` make the grown model compute the source's function whenever
        :meth:`lossless_obstacles` is empty. ``duplicate`` is the same with even (Net2Net) splits;
        ``stack``/``interpolate`` repeat source blocks (LiGO's StackBERT-style depth).
        """
        generator = torch.Generator().manual_seed(seed)
        self._reset_depth(depth_method)
        for key, factor in self.width.items():
            space, side = Space(key.rsplit("_", 1)[0]), Side(key.rsplit("_", 1)[1])
            if width_init in ("lossless", "duplicate"):
                group, unit = self.layouts[space].lossless_factors(space, side, asymmetric=width_init == "lossless")
            elif width_init == "random":
                group = torch.randn(factor.group.shape[-2:], generator=generator) / math.sqrt(factor.group.shape[-1])
                unit = torch.randn(factor.unit.shape[-2:], generator=generator) / math.sqrt(factor.unit.shape[-1])
            else:
                raise ValueError(f"unknown width_init {width_init!r}; expected 'lossless', 'duplicate' or 'random'")
            if noise_std:
                unit = unit + noise_std * torch.randn(unit.shape, generator=generator)
            factor.start_at(group, unit)

    def _reset_depth(self, method: str) -> None:
        n_out, n_in = self.target_shape.num_layers, self.source_shape.num_layers
        self.norm_offset.zero_()
        if method != "identity":
            self.depth.copy_(repeat_depth(n_out, n_in, method).expand_as(self.depth))
            return
        self.depth.zero_()
        writers = set(self.table.layer_parameters_of(*RESIDUAL_WRITERS))
        norms = set(self.table.layer_parameters_of(*NORMS))
        post_ln = self.table.norm_placement == "post"
        output_norm = set(self.table.parameter_axes({self.table.block_output_norm: Role.LAYER_NORM})) if post_ln else set()
        plan = identity_depth_plan(n_out, n_in)
        for target, (source, is_new) in enumerate(plan):
            last_of_run = target + 1 == n_out or not plan[target + 1][1]
            for index, name in enumerate(self.layer_names):
                if is_new and name in writers:
                    continue  # zero residual writers: the new block adds nothing to the stream
                if post_ln and name in norms:
                    # The block that ends a run (a source block and the new blocks after it) carries the
                    # source block's output norm; every other norm of the run is a plain normalisation.
                    carries = last_of_run if name in output_norm else not is_new
                    if not carries:
                        if name in self.norm_gains:
                            self.norm_offset[self.norm_gains.index(name), target] = 1.0
                        continue
                self.depth[index, target, source] = 1.0

    def forward(
        self, weights: TransformerWeights, layers: Sequence[int] | None = None,
        at_source_width: Collection[tuple[str, int]] = (),
    ) -> TransformerWeights:
        """Grow ``weights``; with ``layers``, grow only those target blocks (shared tensors included).
        ``at_source_width`` names (block tensor, axis) pairs left unexpanded (:class:`SourceWidthMap`)."""
        index = None if layers is None else torch.as_tensor(list(layers), dtype=torch.long, device=self.depth.device)
        depth = self.depth if index is None else self.depth.index_select(1, index)
        offset = self.norm_offset if index is None else self.norm_offset.index_select(1, index)
        factors = self.factors(index)
        shared = {name: self.grow_shared(name, tensor, factors) for name, tensor in weights.shared.items()}
        # unbound once: indexing per parameter would scatter each gradient into a zero tensor of the whole stack
        mixes, offsets = dict(zip(self.layer_names, depth.unbind(0))), dict(zip(self.norm_gains, offset.unbind(0)))
        expand_first = (self.target_shape.num_layers if index is None else len(index)) >= self.source_shape.num_layers
        grown_layers = {}
        for name, stacked in weights.layers.items():
            mix = mixes[name].to(stacked.dtype)
            axes = {axis: spec for axis, spec in self.layer_axes[name].items() if (name, axis) not in at_source_width}
            shared_axes, block_axes = split_shared_axes(axes) if expand_first else ({}, axes)
            grown = self._expand(stacked, shared_axes, factors)
            grown = self._expand(torch.einsum("lj,j...->l...", mix, grown), block_axes, factors)
            if name in offsets:
                grown = grown + offsets[name].to(grown.dtype).unsqueeze(-1)
            grown_layers[name] = grown
        return TransformerWeights(shared, grown_layers)

    def source_width_maps(self) -> list[SourceWidthMap]:
        """The sides of the blocks' linear maps that a training pass computes at the source's width: for each map,
        of the sides whose factor is one full matrix shared by every block, the set a token costs the fewest
        multiply-adds through (``d_t x d_s`` for each such side, plus the map itself at the widths left),
        none on a tie. Per token, so never more arithmetic at any batch size; the weight's expansion it saves
        comes on top."""
        maps = []
        for path, params in self.table.layer_linear_maps().items():
            weight, bias = params["weight"], params.get("bias")
            sides = {axes_in(spec)[0].side: (index, spec) for index, spec in weight.items()}  # a Fused axis's parts share it
            sizes = {side: self._space_widths(spec) for side, (_, spec) in sides.items()}
            movable = [
                side for side, (_, spec) in sides.items()
                if isinstance(spec, Axis) and not spec.space.per_layer and self.layouts[spec.space].stored_groups == (1, 1)
                and (side is Side.IN or bias is None or dict(bias) == {0: spec})
            ]
            subsets = [chosen for count in range(len(movable) + 1) for chosen in itertools.combinations(movable, count)]
            for side in min(subsets, key=lambda chosen: (_per_token_cost(sizes, chosen), len(chosen))):
                index, axis = sides[side]
                tensors = [(f"{path}.weight", index)] + ([(f"{path}.bias", 0)] if side is Side.OUT and bias is not None else [])
                maps.append(SourceWidthMap(path, side, factor_key(axis), tuple(tensors)))
        return maps

    def _space_widths(self, spec: AxisSpec) -> tuple[int, int]:
        """A weight axis's (target, source) sizes: its spaces' widths, every part of a :class:`Fused` axis."""
        widths = [(layout.groups[0] * layout.units[0], layout.groups[1] * layout.units[1])
                  for layout in (self.layouts[axis.space] for axis in axes_in(spec))]
        return sum(target for target, _ in widths), sum(source for _, source in widths)

    def factors(
        self, index: torch.Tensor | None = None, keys: Iterable[str] | None = None
    ) -> dict[str, tuple[torch.Tensor | None, torch.Tensor]]:
        """Every width factor's ``(group, unit)`` (or those of ``keys``), by factor key, for :func:`apply_kronecker`;
        per-layer ones only for the target blocks in ``index`` when given (:meth:`WidthFactor.factors`).

        Computed once per growth and reused by every tensor with an axis in the space: the residual
        stream's factors alone serve most tensors, and recomputing them per tensor (with ``fan_in`` steps,
        element-wise kernels each, forward and backward) made the operator launch-bound on a GPU. A
        single-group factor (the residual stream's, any full-matrix layout) is folded into its unit
        matrix here, so each use is one contraction instead of two.
        """
        folded = {}
        for key in self.width if keys is None else keys:
            group, unit = self.width[key].factors(index)
            folded[key] = (None, unit * group) if group.shape[-2:] == (1, 1) else (group, unit)
        return folded

    def grow_shared(
        self, name: str, tensor: torch.Tensor, factors: Mapping[str, tuple[torch.Tensor | None, torch.Tensor]] | None = None
    ) -> torch.Tensor:
        """Grow one tensor outside the blocks (an embedding table, the final norm); ``factors``: from
        :meth:`factors`, when the caller grows several tensors."""
        axes = self.shared_axes[name]
        if not axes:  # copied as it is (a head's bias): a copy, or the merged parameter would alias the source
            return tensor.clone()
        return self._expand(tensor.unsqueeze(0), axes, factors or self._factors_of(axes)).squeeze(0)

    @torch.no_grad()
    def grow_shared_by_rows(
        self, name: str, tensor: torch.Tensor, dtype: torch.dtype | None = None, rows: int = ROWS_PER_SLICE
    ) -> torch.Tensor:
        """:meth:`grow_shared` in ``dtype``, a slice of rows at a time when the growth does not mix rows.

        An embedding table's rows are tokens or positions, which growth never mixes, and it is the
        largest grown tensor: growing it whole holds the full table in the operator's dtype plus the
        expansion's intermediate result (and, for a bf16 target, the cast copy). By rows, the grown
        table in ``dtype`` is the only full-size tensor -- what bounds a streamed merge's peak memory.
        """
        if not self.keeps_rows(name, tensor.dim()) or tensor.shape[0] <= rows:
            grown = self.grow_shared(name, tensor)
            return grown if dtype is None else grown.to(dtype)
        factors = self._factors_of(self.shared_axes[name])
        first = self.grow_shared(name, tensor[:rows], factors)
        grown = first.new_empty((tensor.shape[0], *first.shape[1:]), dtype=dtype or first.dtype)
        grown[:rows] = first
        for start in range(rows, tensor.shape[0], rows):
            grown[start : start + rows] = self.grow_shared(name, tensor[start : start + rows], factors)
        return grown

    def keeps_rows(self, name: str, ndim: int) -> bool:
        """Whether growth leaves the rows of shared tensor ``name`` (of ``ndim`` axes) apart: each grown row
        is the growth of its source row alone, as for an embedding table (rows are tokens or positions).
        Then any subset of rows can be grown without the others."""
        axes = self.shared_axes[name]
        return ndim >= 2 and 0 not in axes and -ndim not in axes

    def _factors_of(self, axes: Mapping[int, AxisSpec]) -> dict[str, tuple[torch.Tensor | None, torch.Tensor]]:
        """The factors that one tensor's ``axes`` use, and no other (a merge grows a table with these alone)."""
        return self.factors(keys=dict.fromkeys(factor_key(axis) for spec in axes.values() for axis in axes_in(spec)))

    def _expand(
        self,
        tensor: torch.Tensor,
        axes: Mapping[int, AxisSpec],
        factors: Mapping[str, tuple[torch.Tensor | None, torch.Tensor]],
    ) -> torch.Tensor:
        """Apply the width factors of ``axes`` (in :func:`expansion_order`); per-layer ones must be those of
        ``tensor``'s blocks. A :class:`Fused` axis is cut into its equal parts, each grown by its own space's
        factor."""
        for axis_index, spec in expansion_order(tensor.shape, axes, factors):
            dim = axis_index + 1 if axis_index >= 0 else tensor.dim() + axis_index
            if isinstance(spec, Fused):
                parts = tensor.chunk(len(spec.parts), dim)
                tensor = torch.cat([_expand_axis(part, dim, axis, factors) for part, axis in zip(parts, spec.parts)], dim)
            else:
                tensor = _expand_axis(tensor, dim, spec, factors)
        return tensor

    def extra_repr(self) -> str:
        return f"{self.source_shape} -> {self.target_shape}, width_structure={self.width_structure!r}"


def _per_token_cost(widths: Mapping[Side, tuple[int, int]], at_source_width: Collection[Side]) -> int:
    """Multiply-adds per token of a linear map with (target, source) ``widths`` per side, those sides
    ``at_source_width`` reached through their factor (``target x source`` each) and the map at the widths left."""
    map_widths = [source if side in at_source_width else target for side, (target, source) in widths.items()]
    return math.prod(map_widths) + sum(math.prod(widths[side]) for side in at_source_width)


def split_shared_axes(axes: Mapping[int, AxisSpec]) -> tuple[dict[int, AxisSpec], dict[int, AxisSpec]]:
    """``axes`` split into those whose factors every block shares (they may be applied before depth
    mixing) and those with per-block factors (only after it)."""
    shared = {index: spec for index, spec in axes.items() if not any(axis.space.per_layer for axis in axes_in(spec))}
    return shared, {index: spec for index, spec in axes.items() if index not in shared}


def expansion_order(
    shape: torch.Size, axes: Mapping[int, AxisSpec], factors: Mapping[str, tuple[torch.Tensor | None, torch.Tensor]]
) -> list[tuple[int, AxisSpec]]:
    """``axes`` (of a tensor of ``shape``, leading layer axis) in the order of fewest multiply-adds.

    Expanding an axis costs its contraction times the size of every other axis at that point, so the
    costliest contraction should meet the other axes while they are still small: a grown FFN weight's
    residual side (a full 384 x 512 matrix for MiniLM -> H512) before its FFN side widens 1536 -> 2048,
    25% fewer operations than the other way round.
    """
    def cost(order: tuple[tuple[int, AxisSpec], ...]) -> int:
        sizes, total = list(shape), 0
        for axis_index, spec in order:
            dim = axis_index + 1 if axis_index >= 0 else len(sizes) + axis_index
            others = math.prod(sizes) // sizes[dim]
            contraction, sizes[dim] = _contraction_cost(spec, factors)
            total += others * contraction
        return total

    return list(min(itertools.permutations(axes.items()), key=cost, default=()))


def _contraction_cost(spec: AxisSpec, factors: Mapping[str, tuple[torch.Tensor | None, torch.Tensor]]) -> tuple[int, int]:
    """Multiply-adds per element of the other axes to expand one axis (in the order :func:`apply_kronecker`
    takes, every part of a :class:`Fused` axis by its own factor), and the axis's size afterwards."""
    cost, grown = 0, 0
    for axis in axes_in(spec):
        group, unit = factors[factor_key(axis)]
        u_out, u_in = unit.shape[-2:]
        if group is None:
            cost, grown = cost + u_out * u_in, grown + u_out
            continue
        g_out, g_in = group.shape[-2:]
        if _group_first((g_out, g_in), (u_out, u_in)):
            cost += g_out * g_in * u_in + g_out * u_out * u_in
        else:
            cost += g_in * u_in * u_out + g_out * g_in * u_out
        grown += g_out * u_out
    return cost, grown


def _expand_axis(
    tensor: torch.Tensor, dim: int, axis: Axis, factors: Mapping[str, tuple[torch.Tensor | None, torch.Tensor]]
) -> torch.Tensor:
    group, unit = (None if value is None else value.to(tensor.dtype) for value in factors[factor_key(axis)])
    return apply_kronecker(tensor, dim, group, unit)


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


def stage_seed(init_seed: int, stage_index: int) -> int:
    """The seed of a stage's random initialisation, by its index in :meth:`LiGOOperator.stages` order (Local
    stages, then Global). One rule, so that a server builds the very Global stage every party starts from."""
    return init_seed + stage_index


class LiGOOperator(nn.Module):
    """The whole growth operator of one adapter: sources -> [Local stages] -> Global stage -> target."""

    def __init__(
        self,
        table: ArchitectureTable,
        sources: list[SourceWeights],
        target: ModelShape,
        intermediate: ModelShape | None,
        width_structure: str,
        width_step: str = "fan_in",
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
                GrowthStage(table, source.shape, intermediate, width_structure, width_step) for source in sources
            )
            global_source = intermediate
        global_source.check_can_grow_to(target)
        self.global_stage = GrowthStage(table, global_source, target, width_structure, width_step)
        self.shared_intermediate: SourceWeights | None = None

    def pin_intermediate(self, weights: TransformerWeights) -> None:
        """Grow from ``weights`` (of the intermediate shape, e.g. an average several parties shared) instead of
        the Local stages' output, from now on; the Local stages are frozen, since nothing reads them."""
        if self.local_stages is None:
            raise ValueError("plain LiGO has no intermediate to replace: pin_intermediate needs Dual-LiGO")
        device = self.global_stage.depth.device
        moved = TransformerWeights({k: v.to(device) for k, v in weights.shared.items()},
                                   {k: v.to(device) for k, v in weights.layers.items()})
        self.shared_intermediate = SourceWeights(moved, self.global_stage.source_shape, "shared intermediate")
        self.local_stages.requires_grad_(False)

    def reset_parameters(self, width_init: str, depth_method: str, noise_std: float, seed: int) -> None:
        for index, stage in enumerate(self.stages()):
            stage.reset_parameters(width_init, depth_method, noise_std, stage_seed(seed, index))

    def lossless_obstacles(self, width_init: str, depth_method: str) -> list[str]:
        """Why the grown model will not start by computing its source's function (empty: it will)."""
        reasons = []
        if width_init == "random":
            reasons.append("width_init='random' discards the source's width structure")
        for stage in self.stages():
            where = f"{stage.source_shape} -> {stage.target_shape}"
            reasons += [f"{where}: {reason}" for reason in stage.lossless_obstacles()]
            if depth_method != "identity" and stage.target_shape.num_layers > stage.source_shape.num_layers:
                reasons.append(f"{where}: depth_init={depth_method!r} repeats source blocks; 'identity' keeps the function")
        return reasons

    @property
    def dtype(self) -> torch.dtype:
        """The dtype the operator grows in (its Global stage's)."""
        return self.global_stage.depth.dtype

    def stages(self) -> list[GrowthStage]:
        return [*(self.local_stages or []), self.global_stage]

    def intermediate_weights(self, rows: Mapping[str, torch.Tensor] | None = None) -> TransformerWeights:
        """What the Global stage consumes: the (averaged) Local outputs, a pinned shared intermediate, or the
        source itself; with ``rows``, only those rows of the shared tensors it names (see :meth:`forward`)."""
        rows = rows or {}
        if self.shared_intermediate is not None:
            return self.shared_intermediate.weights().take_rows(rows)
        if self.local_stages is None:
            return self.sources[0].weights().take_rows(rows)
        return TransformerWeights.mean(
            [stage(source.weights().take_rows(rows)) for stage, source in zip(self.local_stages, self.sources)]
        )

    def forward(
        self, layers: Sequence[int] | None = None, rows: Mapping[str, torch.Tensor] | None = None,
        at_source_width: Collection[tuple[str, int]] = (),
    ) -> TransformerWeights:
        """Grow the target (only blocks ``layers`` when given). ``rows`` maps shared tensors whose rows growth
        keeps apart (:meth:`GrowthStage.keeps_rows`) to the row numbers wanted: those rows alone are grown,
        in that order. A training step needs only the embedding rows of its batch's tokens, and growing the
        whole word-embedding table (30,522 rows for BERT) was a third of the operator's cost per step.
        ``at_source_width``: the Global stage's block tensors and axes left at its source's width
        (:meth:`GrowthStage.source_width_maps`)."""
        intermediate = self.intermediate_weights(rows)
        for name in rows or {}:
            if not self.global_stage.keeps_rows(name, intermediate.shared[name].dim()):
                raise ValueError(f"growth mixes the rows of {name}: it cannot be grown a subset of rows at a time")
        return self.global_stage(intermediate, layers, at_source_width)

    @torch.no_grad()
    def grow_blockwise(
        self, progressbar: bool = False, dtype: torch.dtype | None = None, consume: bool = False
    ) -> Iterator[tuple[int | None, TransformerWeights]]:
        """Yield the grown target piece by piece, in ``dtype`` (default: the operator's):
        ``(None, shared tensors)``, then ``(i, block i)``.

        Merging and exporting consume this instead of ``forward()`` so that at most one grown block
        exists next to the target being filled: the whole grown copy never does. Embedding tables are
        grown by rows straight into ``dtype`` (:meth:`GrowthStage.grow_shared_by_rows`).

        ``consume`` is for a caller that discards the operator afterwards (``merge_and_unload``): the
        operator gives up its sources and its width factors' anchors (:meth:`WidthFactor.bake`) at the
        start, so each source tensor is freed once nothing is left
        to grow from it -- the source's embedding tables as soon as the shared tensors are grown, each
        stacked block tensor (all source blocks of one parameter) as soon as every target block's copy of
        it is. Blocks then come one parameter at a time, parameter by parameter (each yield holds one
        tensor of one block): grown block by block, every source stack would live until the last block,
        beside the nearly complete target. The operator cannot grow again.
        """
        intermediate = self.intermediate_weights()
        stage = self.global_stage
        if consume:
            self.sources = nn.ModuleList()
            for factor in stage.width.values():
                factor.bake()
        shared = {name: stage.grow_shared_by_rows(name, tensor, dtype) for name, tensor in intermediate.shared.items()}
        stacks = dict(intermediate.layers)
        del intermediate  # the last reference to a consumed source's shared tensors
        yield None, TransformerWeights(shared, {})
        del shared
        blocks = range(stage.target_shape.num_layers)
        pieces = [(layer, [*stacks]) for layer in blocks] if not consume else [
            (layer, [name]) for name in [*stacks] for layer in blocks]
        for layer, names in tqdm(pieces, disable=not progressbar, desc="Growing target layers"):
            block = stage(TransformerWeights({}, {name: stacks[name] for name in names}), layers=[layer])
            if consume and layer == blocks[-1]:
                del stacks[names[0]]  # every target block of this parameter is grown: its source stack goes
            yield layer, block if dtype is None else block.to(dtype)
