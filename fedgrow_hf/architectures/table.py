"""The vocabulary in which an architecture tells LiGO what each of its weights *is*.

LiGO expands every weight along the axes that live in a growable space (the residual stream, a
layer's query/key/value space, a layer's FFN space) and leaves the other axes alone (vocabulary,
positions, image channels). Which axis of which tensor lives in which space is architecture
knowledge; it is written down once per architecture as an :class:`ArchitectureTable` that maps module
paths to a :class:`Role`, and :data:`ROLE_AXES` says, once for all architectures, what each role's
tensors look like. Adding an architecture is writing one new table.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field

from torch import nn
from transformers import AutoModel, AutoModelForCausalLM


class Space(str, enum.Enum):
    """A growable vector space of a transformer.

    ``RESIDUAL`` is shared by the whole network (every module that reads or writes the residual
    stream uses the same expansion, so the grown stream stays consistent); the others exist once per
    layer and get their own expansion per layer.
    """

    RESIDUAL = "residual"
    QUERY = "query"
    KEY = "key"  # one head per key/value group (fewer than query heads with grouped-query attention)
    VALUE = "value"
    FFN = "ffn"
    # What the attention output projection reads under grouped-query attention: one value vector per
    # *query* head, so it has the query heads' groups where VALUE has the key/value groups'.
    HEAD_OUTPUT = "head_output"

    @property
    def per_layer(self) -> bool:
        return self is not Space.RESIDUAL


class Side(str, enum.Enum):
    """How a tensor axis meets its space.

    ``OUT`` axes *produce* vectors of the space (output rows of a weight, biases, LayerNorm
    parameters, embedding tables): they are expanded by duplication. ``IN`` axes *consume* vectors
    of the space (input columns of a weight): they are expanded with the normalised contraction
    that undoes the duplication, which is what makes width growth function-preserving.
    """

    OUT = "out"
    IN = "in"


@dataclass(frozen=True)
class Axis:
    space: Space
    side: Side


@dataclass(frozen=True)
class Fused:
    """One tensor axis holding several spaces' vectors end to end, in equal parts (GPT-2's ``c_attn``
    computes query, key and value in one matrix): each part is grown by its own space's factor."""

    parts: tuple[Axis, ...]


AxisSpec = Axis | Fused


def axes_in(spec: AxisSpec) -> tuple[Axis, ...]:
    """The :class:`Axis` (or the parts of a :class:`Fused` axis) that one tensor axis lives in."""
    return spec.parts if isinstance(spec, Fused) else (spec,)


def out(space: Space) -> Axis:
    return Axis(space, Side.OUT)


def in_(space: Space) -> Axis:
    return Axis(space, Side.IN)


class Role(str, enum.Enum):
    """What a module (or a bare parameter) is, as far as growth is concerned."""

    EMBEDDING = "embedding"  # [vocabulary, residual] table writing into the stream (or a language-model head)
    RESIDUAL_TENSOR = "residual_tensor"  # a bare nn.Parameter whose last axis is the residual stream
    PATCH_EMBEDDING = "patch_embedding"  # Conv2d from pixels into the residual stream
    LAYER_NORM = "layer_norm"
    RMS_NORM = "rms_norm"  # a gain without bias or mean-centring (LlamaRMSNorm)
    # The last norm of a decoder, read only by the output embedding (lm_head, tied or not). That head
    # is grown like the input embedding, as a *producer* of the stream, so the norm's parameters take
    # the *consumer* side: logits = lm_head' . norm' = lm_head . norm (see fedgrow_hf.tuners.ligo.initialization).
    OUTPUT_NORM = "output_norm"
    QUERY = "query"
    KEY = "key"
    VALUE = "value"
    FUSED_QKV = "fused_qkv"  # query, key and value of all heads in one weight (GPT-2's c_attn)
    ATTENTION_OUTPUT = "attention_output"
    GROUPED_ATTENTION_OUTPUT = "grouped_attention_output"  # o_proj under grouped-query attention
    FFN_IN = "ffn_in"
    FFN_OUT = "ffn_out"
    RESIDUAL_DENSE = "residual_dense"  # residual -> residual linear map (e.g. BERT's pooler)
    # A task head's linear map from the residual stream to outputs growth does not widen (a classifier's
    # labels): only its input columns grow, on the consumer side, so it reads the grown stream as the source's
    # head read the source's (grown from a source's own head only on request: ArchitectureTable.head_roles).
    READOUT = "readout"


# For every role: parameter name -> {tensor axis -> Axis}. Axes not listed are left as they are.
# The empty parameter name stands for a bare nn.Parameter registered under the table's path.
QKV = Fused((out(Space.QUERY), out(Space.KEY), out(Space.VALUE)))

ROLE_AXES: Mapping[Role, Mapping[str, Mapping[int, AxisSpec]]] = {
    Role.EMBEDDING: {"weight": {-1: out(Space.RESIDUAL)}},
    Role.READOUT: {"weight": {1: in_(Space.RESIDUAL)}, "bias": {}},  # the bias is copied
    Role.RESIDUAL_TENSOR: {"": {-1: out(Space.RESIDUAL)}},
    Role.PATCH_EMBEDDING: {"weight": {0: out(Space.RESIDUAL)}, "bias": {0: out(Space.RESIDUAL)}},
    Role.LAYER_NORM: {"weight": {0: out(Space.RESIDUAL)}, "bias": {0: out(Space.RESIDUAL)}},
    Role.RMS_NORM: {"weight": {0: out(Space.RESIDUAL)}},
    Role.OUTPUT_NORM: {"weight": {0: in_(Space.RESIDUAL)}, "bias": {0: in_(Space.RESIDUAL)}},
    Role.QUERY: {"weight": {0: out(Space.QUERY), 1: in_(Space.RESIDUAL)}, "bias": {0: out(Space.QUERY)}},
    Role.KEY: {"weight": {0: out(Space.KEY), 1: in_(Space.RESIDUAL)}, "bias": {0: out(Space.KEY)}},
    Role.VALUE: {"weight": {0: out(Space.VALUE), 1: in_(Space.RESIDUAL)}, "bias": {0: out(Space.VALUE)}},
    Role.FUSED_QKV: {"weight": {0: QKV, 1: in_(Space.RESIDUAL)}, "bias": {0: QKV}},
    Role.ATTENTION_OUTPUT: {
        "weight": {0: out(Space.RESIDUAL), 1: in_(Space.VALUE)},
        "bias": {0: out(Space.RESIDUAL)},
    },
    Role.GROUPED_ATTENTION_OUTPUT: {
        "weight": {0: out(Space.RESIDUAL), 1: in_(Space.HEAD_OUTPUT)},
        "bias": {0: out(Space.RESIDUAL)},
    },
    Role.FFN_IN: {"weight": {0: out(Space.FFN), 1: in_(Space.RESIDUAL)}, "bias": {0: out(Space.FFN)}},
    Role.FFN_OUT: {"weight": {0: out(Space.RESIDUAL), 1: in_(Space.FFN)}, "bias": {0: out(Space.RESIDUAL)}},
    Role.RESIDUAL_DENSE: {
        "weight": {0: out(Space.RESIDUAL), 1: in_(Space.RESIDUAL)},
        "bias": {0: out(Space.RESIDUAL)},
    },
}
# The roles whose output is added to the residual stream inside a block: zero, they make the block the identity.
RESIDUAL_WRITERS = (Role.ATTENTION_OUTPUT, Role.GROUPED_ATTENTION_OUTPUT, Role.FFN_OUT)
NORMS = (Role.LAYER_NORM, Role.RMS_NORM)
# The roles whose module is a linear map over its input's last axis, ``y = x W^T + b`` (``y = x W + b`` for a
# :class:`Transposed` entry): the weight's in axis meets the input's last axis, its out axis and the bias the
# output's. What lets a training pass apply a width factor to the activations instead of the weight
# (:class:`fedgrow_hf.tuners.ligo.layer.SourceWidthMap`).
LINEAR_MAPS = (
    Role.QUERY, Role.KEY, Role.VALUE, Role.FUSED_QKV, Role.ATTENTION_OUTPUT, Role.GROUPED_ATTENTION_OUTPUT,
    Role.FFN_IN, Role.FFN_OUT, Role.RESIDUAL_DENSE, Role.READOUT,
)


@dataclass(frozen=True)
class Transposed:
    """A module storing its weight as [in, out] (GPT-2's ``Conv1D``): ``role``'s weight axes 0 and 1 swapped."""

    role: Role


TableEntry = Role | Transposed


def role_of(entry: TableEntry) -> Role:
    return entry.role if isinstance(entry, Transposed) else entry


def entry_axes(entry: TableEntry) -> Mapping[str, Mapping[int, AxisSpec]]:
    """``parameter name -> {tensor axis -> axis spec}`` of one table entry."""
    axes = ROLE_AXES[role_of(entry)]
    if not isinstance(entry, Transposed):
        return axes
    swap = {0: 1, 1: 0}
    return {name: {swap.get(i, i) if name == "weight" else i: a for i, a in spec.items()} for name, spec in axes.items()}


@dataclass(frozen=True)
class ConfigFields:
    """Names of the shape fields in the architecture's ``PretrainedConfig``."""

    num_layers: str = "num_hidden_layers"
    hidden: str = "hidden_size"
    ffn: str = "intermediate_size"
    heads: str = "num_attention_heads"
    kv_heads: str | None = None  # key/value heads of grouped-query attention; None: one per query head
    head_dim: str | None = None  # None (or a config value of None): hidden // heads
    ffn_multiple_when_unset: int | None = None  # GPT-2's n_inner=None means an FFN of 4 x the hidden size


@dataclass(frozen=True)
class ArchitectureTable:
    """Everything LiGO needs to know about one transformers architecture.

    Paths are relative to the *base* model (``BertModel``, ``ViTModel``), which is what
    ``AutoModel`` loads for a source checkpoint and what ``model.base_model`` is for every task head --
    or, with ``root="model"``, to the model itself: a decoder's output embedding (``lm_head``) is
    grown from its source's, so sources and targets are the ``*ForCausalLM`` models ``auto_class`` loads.
    """

    model_type: str
    layers_path: str  # the nn.ModuleList of transformer blocks
    shared_roles: Mapping[str, TableEntry]  # module / bare-parameter path -> role, outside the blocks
    layer_roles: Mapping[str, TableEntry]  # module path inside one block -> role
    # Config fields that growth cannot change: source and target must agree on them.
    fixed_fields: tuple[str, ...] = ()
    fields: ConfigFields = field(default_factory=ConfigFields)
    # Where a block's LayerNorms sit. "pre": each sublayer reads LN(x) and adds to x, so a block whose
    # residual writers are zero is the identity. "post" (BERT): the block's output *is* a LayerNorm's
    # output, so a new block can only be the identity if the norm before it is a plain normalisation
    # and the new block's ``block_output_norm`` carries the affine part (see ``GrowthStage``).
    norm_placement: str = "pre"
    block_output_norm: str | None = None  # module path (in a block) of the LayerNorm that ends a block
    root: str = "base_model"  # what the paths are relative to: "base_model" or "model" (see above)
    # Task heads a base-model-rooted table can grow from a source's own head (LiGOConfig.grow_heads), by module
    # path relative to the whole model (BERT's ``classifier``), where a source is a model of the target's class
    # with a head of the target's shape; otherwise a target keeps its own head.
    head_roles: Mapping[str, TableEntry] = field(default_factory=dict)
    auto_class: type = AutoModel  # loads a source checkpoint, and builds a target when no class is given
    # Rotary position embeddings rotate each query/key head at frequencies set by its size: a target
    # head of another size cannot attend like a source head.
    rotary: bool = False
    # Config flags that, set, make a block's function depend on its index (GPT-2's
    # scale_attn_by_inverse_layer_idx): a source block behind a new one then computes something else.
    index_dependent_fields: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.norm_placement not in ("pre", "post"):
            raise ValueError(f"norm_placement must be 'pre' or 'post', got {self.norm_placement!r}")
        if self.norm_placement == "post" and self.layer_roles.get(self.block_output_norm) is not Role.LAYER_NORM:
            raise ValueError(f"a post-LN table needs block_output_norm naming a LayerNorm, got {self.block_output_norm!r}")
        if self.root not in ("base_model", "model"):
            raise ValueError(f"root must be 'base_model' or 'model', got {self.root!r}")
        if self.head_roles and self.root == "model":
            raise ValueError("a table rooted at the model lists its heads in shared_roles, not head_roles")
        clashing = {path.split(".")[0] for path in self.head_roles} & {path.split(".")[0] for path in self.shared_roles}
        if clashing:
            raise ValueError(f"head paths and shared paths share one namespace in the grown weights: {sorted(clashing)}")

    @property
    def causal_lm(self) -> bool:
        """Whether its models are decoder language models (``*ForCausalLM``), grown with their output head."""
        return self.auto_class is AutoModelForCausalLM

    def root_of(self, model: nn.Module) -> nn.Module:
        """The module the table's paths are relative to."""
        return model.base_model if self.root == "base_model" else model

    def parameter_axes(self, roles: Mapping[str, TableEntry]) -> dict[str, Mapping[int, AxisSpec]]:
        """Expand a role mapping into ``parameter path -> axes`` for every parameter it covers."""
        axes: dict[str, Mapping[int, AxisSpec]] = {}
        for path, entry in roles.items():
            for param_name, param_axes in entry_axes(entry).items():
                axes[f"{path}.{param_name}" if param_name else path] = param_axes
        return axes

    @property
    def shared_axes(self) -> dict[str, Mapping[int, AxisSpec]]:
        return self.parameter_axes(self.shared_roles)

    @property
    def layer_axes(self) -> dict[str, Mapping[int, AxisSpec]]:
        return self.parameter_axes(self.layer_roles)

    @property
    def head_axes(self) -> dict[str, Mapping[int, AxisSpec]]:
        """The heads' parameters (paths relative to the whole model) and their axes."""
        return self.parameter_axes(self.head_roles)

    @property
    def grown_axes(self) -> dict[str, Mapping[int, AxisSpec]]:
        """Every tensor outside the blocks a growth stage may grow: the shared ones and the heads."""
        return {**self.shared_axes, **self.head_axes}

    @property
    def rms_normalised(self) -> bool:
        """Whether every norm over the residual stream is an RMSNorm (no mean-centring): what lets a residual
        stream of any width start exactly (:meth:`fedgrow_hf.tuners.ligo.layer.SpaceLayout.lossless_factors`)."""
        roles = {role_of(entry) for entry in (*self.shared_roles.values(), *self.layer_roles.values())}
        return Role.RMS_NORM in roles and Role.LAYER_NORM not in roles

    def layer_linear_maps(self) -> dict[str, Mapping[str, Mapping[int, AxisSpec]]]:
        """The block modules that are linear maps (:data:`LINEAR_MAPS`): module path -> {parameter name -> axes}."""
        return {path: entry_axes(entry) for path, entry in self.layer_roles.items() if role_of(entry) in LINEAR_MAPS}

    def layer_parameters_of(self, *roles: Role) -> list[str]:
        """Block parameter paths whose module has one of ``roles`` (e.g. the residual writers)."""
        return [
            name
            for path, entry in self.layer_roles.items()
            if role_of(entry) in roles
            for name in self.parameter_axes({path: entry})
        ]
