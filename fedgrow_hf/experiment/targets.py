"""Target shapes by name, and a shape or a target config from what a user gives: a preset name, a JSON
object of shape fields, or a config file / model directory."""

from __future__ import annotations

import json
from pathlib import Path

from transformers import AutoConfig, PretrainedConfig

from ..architectures import get_architecture_table
from ..tuners.ligo.shapes import ModelShape

# Target shapes by name; anything else given as a target is a config.json or a model directory.
# The default, L8/H768 with 12 heads, is a lossless growth of MiniLM (and of any BERT 128/192/256/384 wide
# with 32-dim heads): 768 is a multiple of their widths and its heads are as many and wider.
DEFAULT_TARGET = "bert-l8-h768"
TARGET_PRESETS: dict[str, dict[str, int]] = {
    "bert-l8-h768": {"num_hidden_layers": 8, "hidden_size": 768, "num_attention_heads": 12, "intermediate_size": 3072},
    "bert-l8-h512": {"num_hidden_layers": 8, "hidden_size": 512, "num_attention_heads": 8, "intermediate_size": 2048},
    "bert-base": {"num_hidden_layers": 12, "hidden_size": 768, "num_attention_heads": 12, "intermediate_size": 3072},
    "bert-large": {"num_hidden_layers": 24, "hidden_size": 1024, "num_attention_heads": 16, "intermediate_size": 4096},
    "vit-small": {"num_hidden_layers": 12, "hidden_size": 384, "num_attention_heads": 6, "intermediate_size": 1536},
    "vit-base": {"num_hidden_layers": 12, "hidden_size": 768, "num_attention_heads": 12, "intermediate_size": 3072},
    # decoders: the next size of the family a user's source comes from (heads of 64 as in the source)
    "smollm2-360m": {"num_hidden_layers": 32, "hidden_size": 960, "num_attention_heads": 15, "num_key_value_heads": 5,
                     "intermediate_size": 2560},
    "qwen2.5-1.5b": {"num_hidden_layers": 28, "hidden_size": 1536, "num_attention_heads": 12, "num_key_value_heads": 2,
                     "intermediate_size": 8960},
}
# The default target of a decoder (``fedgrow grow --task causal-lm``): SmolLM2-360M's shape, the next size
# of HuggingFaceTB/SmolLM2-135M (L30-H576, 9 heads of 64 on 3 key/value heads).
DEFAULT_CAUSAL_LM_TARGET = "smollm2-360m"


def parse_shape(spec: str) -> dict[str, int]:
    """A shape from a preset name, a JSON object or a config file/directory."""
    if spec in TARGET_PRESETS:
        return dict(TARGET_PRESETS[spec])
    if spec.lstrip().startswith("{"):
        try:
            return json.loads(spec)
        except json.JSONDecodeError as error:
            raise ValueError(f"cannot parse the shape {spec!r} as JSON: {error}") from error
    if not Path(spec).exists():
        raise FileNotFoundError(f"{spec!r} is neither a preset ({sorted(TARGET_PRESETS)}) nor an existing config file/dir")
    config = AutoConfig.from_pretrained(spec)
    return ModelShape.from_config(config, get_architecture_table(config)).to_config_dict()


def resolve_target(spec: str, source_config: PretrainedConfig) -> PretrainedConfig:
    """The target config ``spec`` names: a config file/directory as it is; a preset or JSON shape applied to
    the source's config. A shape that gives no head size has heads of ``hidden_size / num_attention_heads``,
    whatever the source's were."""
    if Path(spec).exists():
        return AutoConfig.from_pretrained(spec)
    shape = parse_shape(spec)
    values = {**source_config.to_diff_dict(), **shape}
    head_dim = get_architecture_table(source_config).fields.head_dim
    if head_dim is not None and head_dim not in shape:
        values.pop(head_dim, None)
    values.pop("architectures", None)
    return type(source_config)(**values)
