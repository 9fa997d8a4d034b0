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


class Space(str, enum.Enum):
    """A growable vector space of a transformer.

    ``RESIDUAL`` is shared by the whole network (every module that reads or writes the residual
    stream uses the same expansion, so the grown stream stays consistent); the others exist once per
    layer and get their own expansion per layer.
    """

    RESIDUAL = "residual"
    QUERY = "query"
    KEY = "key"
    VALUE = "value"
    FFN = "ffn"

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


def out(space: Space) -> Axis:
    return Axis(space, Side.OUT)


def in_(space: Space) -> Axis:
    return Axis(space, Side.IN)


class Role(str, enum.Enum):
    """What a module (or a bare parameter) is, as far as growth is concerned."""

    EMBEDDING = "embedding"  # nn.Embedding writing into the residual stream
    RESIDUAL_TENSOR = "residual_tensor"  # a bare nn.Parameter whose last axis is the residual stream
    PATCH_EMBEDDING = "patch_embedding"  # Conv2d from pixels into the residual stream
    LAYER_NORM = "layer_norm"
    QUERY = "query"
    KEY = "key"
    VALUE = "value"
    ATTENTION_OUTPUT = "attention_output"
    FFN_IN = "ffn_in"
    FFN_OUT = "ffn_out"
    RESIDUAL_DENSE = "residual_dense"  # residual -> residual linear map (e.g. BERT's pooler)


# For every role: parameter name -> {tensor axis -> Axis}. Axes not listed are left as they are.
# The empty parameter name stands for a bare nn.Parameter registered under the table's path.
ROLE_AXES: Mapping[Role, Mapping[str, Mapping[int, Axis]]] = {
    Role.EMBEDDING: {"weight": {-1: out(Space.RESIDUAL)}},
    Role.RESIDUAL_TENSOR: {"": {-1: out(Space.RESIDUAL)}},
    Role.PATCH_EMBEDDING: {"weight": {0: out(Space.RESIDUAL)}, "bias": {0: out(Space.RESIDUAL)}},
    Role.LAYER_NORM: {"weight": {0: out(Space.RESIDUAL)}, "bias": {0: out(Space.RESIDUAL)}},
    Role.QUERY: {"weight": {0: out(Space.QUERY), 1: in_(Space.RESIDUAL)}, "bias": {0: out(Space.QUERY)}},
    Role.KEY: {"weight": {0: out(Space.KEY), 1: in_(Space.RESIDUAL)}, "bias": {0: out(Space.KEY)}},
    Role.VALUE: {"weight": {0: out(Space.VALUE), 1: in_(Space.RESIDUAL)}, "bias": {0: out(Space.VALUE)}},
    Role.ATTENTION_OUTPUT: {
        "weight": {0: out(Space.RESIDUAL), 1: in_(Space.VALUE)},
        "bias": {0: out(Space.RESIDUAL)},
    },
    Role.FFN_IN: {"weight": {0: out(Space.FFN), 1: in_(Space.RESIDUAL)}, "bias": {0: out(Space.FFN)}},
    Role.FFN_OUT: {"weight": {0: out(Space.RESIDUAL), 1: in_(Space.FFN)}, "bias": {0: out(Space.RESIDUAL)}},
    Role.RESIDUAL_DENSE: {
        "weight": {0: out(Space.RESIDUAL), 1: in_(Space.RESIDUAL)},
        "bias": {0: out(Space.RESIDUAL)},
    },
}


@dataclass(frozen=True)
class ConfigFields:
    """Names of the shape fields in the architecture's ``PretrainedConfig``."""

    num_layers: str = "num_hidden_layers"
    hidden: str = "hidden_size"
    ffn: str = "intermediate_size"
    heads: str = "num_attention_heads"


@dataclass(frozen=True)
class ArchitectureTable:
    """Everything LiGO needs to know about one transformers architecture.

    Paths are relative to the *base* model (``BertModel``, ``ViTModel``), which is what
    ``AutoModel`` loads for a source checkpoint and what ``model.base_model`` is for every task head.
    """

    model_type: str
    layers_path: str  # the nn.ModuleList of transformer blocks
    shared_roles: Mapping[str, Role]  # module / bare-parameter path -> role, outside the blocks
    layer_roles: Mapping[str, Role]  # module path inside one block -> role
    # Config fields that growth cannot change: source and target must agree on them.
    fixed_fields: tuple[str, ...] = ()
    fields: ConfigFields = field(default_factory=ConfigFields)
    # Where a block's LayerNorms sit. "pre": each sublayer reads LN(x) and adds to x, so a block whose
    # residual writers are zero is the identity. "post" (BERT): the block's output *is* a LayerNorm's
    # output, so a new block can only be the identity if the norm before it is a plain normalisation
    # and the new block's ``block_output_norm`` carries the affine part (see ``GrowthStage``).
    norm_placement: str = "pre"
    block_output_norm: str | None = None  # module path (in a block) of the LayerNorm that ends a block

    def __post_init__(self) -> None:
        if self.norm_placement not in ("pre", "post"):
            raise ValueError(f"norm_placement must be 'pre' or 'post', got {self.norm_placement!r}")
        if self.norm_placement == "post" and self.layer_roles.get(self.block_output_norm) is not Role.LAYER_NORM:
            raise ValueError(f"a post-LN table needs block_output_norm naming a LayerNorm, got {self.block_output_norm!r}")

    def parameter_axes(self, roles: Mapping[str, Role]) -> dict[str, Mapping[int, Axis]]:
        """Expand a role mapping into ``parameter path -> axes`` for every parameter it covers."""
        axes: dict[str, Mapping[int, Axis]] = {}
        for path, role in roles.items():
            for param_name, param_axes in ROLE_AXES[role].items():
                axes[f"{path}.{param_name}" if param_name else path] = param_axes
        return axes

    @property
    def shared_axes(self) -> dict[str, Mapping[int, Axis]]:
        return self.parameter_axes(self.shared_roles)

    @property
    def layer_axes(self) -> dict[str, Mapping[int, Axis]]:
        return self.parameter_axes(self.layer_roles)

    def layer_parameters_of(self, *roles: Role) -> list[str]:
        """Block parameter paths whose module has one of ``roles`` (e.g. the residual writers)."""
        return [name for path, role in self.layer_roles.items() if role in roles for name in self.parameter_axes({path: role})]
