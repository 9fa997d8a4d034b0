"""What a saved LiGO operator's tensor shapes say about the model shapes it grows.

An adapter's ``target_config`` and ``intermediate_config`` decide how big a model loading it builds,
and they are read before its tensors: a config saying ``hidden_size=16384`` or 10**6 layers would
allocate gigabytes, or loop for minutes, before the state dict's size mismatch shows. The operator's
tensors fix the same sizes -- a stage's depth mix is (block parameters x target layers x source
layers), and the width factor ``group (x) unit`` of a space maps its source size to its target size --
and their shapes can be read from a safetensors header without reading the tensors. So the configs
are checked against those shapes first.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from ...architectures import ArchitectureTable, Side, Space
from .config import LiGOConfig
from .shapes import GrowthShapeError, ModelShape

GLOBAL_STAGE = "global_stage"
# ModelShape attribute -> the space whose width factor fixes it (layers come from the depth mix).
WIDTH_SPACES = {"hidden": Space.RESIDUAL, "ffn": Space.FFN}


def stage_sizes(shapes: Mapping[str, Sequence[int]], stage: str) -> dict[str, tuple[int, int]]:
    """``(target, source)`` sizes of one saved stage by :class:`ModelShape` attribute.

    ``shapes`` maps state-dict keys to tensor shapes; ``stage`` is ``"global_stage"`` or
    ``"local_stages.<i>"``.
    """

    def shape(suffix: str) -> Sequence[int]:
        wanted = f".ligo_operator.{stage}.{suffix}"
        for key, value in shapes.items():
            if key.endswith(wanted):
                if len(value) < 2:  # a depth mix or a width factor maps a source size to a target size
                    raise GrowthShapeError(f"the saved operator's {key} has shape {list(value)}: it needs at least "
                                           "2 dimensions (truncated or edited)")
                return value
        raise GrowthShapeError(f"the saved operator has no {stage}.{suffix}: it is not the operator of this adapter's config")

    depth = shape("depth")
    sizes = {"num_layers": (depth[-2], depth[-1])}
    for attribute, space in WIDTH_SPACES.items():
        factor = f"width.{space.value}_{Side.OUT.value}"
        group, unit = shape(f"{factor}.group"), shape(f"{factor}.unit")
        sizes[attribute] = (group[-2] * unit[-2], group[-1] * unit[-1])
    return sizes


def check_saved_shapes(config: LiGOConfig, table: ArchitectureTable, shapes: Mapping[str, Sequence[int]]) -> None:
    """Raise :class:`GrowthShapeError` naming the config field whose size the saved operator lacks.

    The Global stage grows into ``target_config`` (from ``intermediate_config`` with Dual-LiGO); every
    Local stage grows into ``intermediate_config``. Source sizes are not in the adapter config: the
    sources are checked when they load.
    """
    target = ModelShape.from_config(config.target_config, table)
    expected: list[tuple[str, str, ModelShape, int]] = [(GLOBAL_STAGE, "target_config", target, 0)]
    if config.is_dual:
        intermediate = ModelShape.from_config(config.intermediate_config, table)
        expected.append((GLOBAL_STAGE, "intermediate_config", intermediate, 1))
        expected += [(f"local_stages.{i}", "intermediate_config", intermediate, 0) for i in range(len(config.source_paths))]
    names = {"num_layers": table.fields.num_layers, "hidden": table.fields.hidden, "ffn": table.fields.ffn}
    for stage, config_name, model_shape, side in expected:
        for attribute, (grown, grown_from) in stage_sizes(shapes, stage).items():
            saved = (grown, grown_from)[side]
            if getattr(model_shape, attribute) != saved:
                raise GrowthShapeError(
                    f"the adapter's {config_name}.{names[attribute]}={getattr(model_shape, attribute)} does not fit "
                    f"the saved operator, whose {stage} grows {'into' if side == 0 else 'from'} {saved}"
                )
