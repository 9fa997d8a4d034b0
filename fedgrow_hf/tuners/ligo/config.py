"""``LiGOConfig``: the PEFT config of a (Dual-)LiGO growth operator."""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any

from peft import PeftConfig
from transformers import PretrainedConfig

from ...architectures import get_architecture_table
from ...data.common import source_name
from .peft_type import LIGO_PEFT_TYPE
from .shapes import OPTIONAL_SHAPE_FIELDS, SHAPE_FIELDS, ModelShape

__all__ = ["DEPTH_INITS", "WIDTH_INITS", "WIDTH_STEPS", "WIDTH_STRUCTURES", "LiGOConfig", "source_name"]

WIDTH_STRUCTURES = ("head_kronecker", "head_groups", "dense")
WIDTH_STEPS = ("fan_in", "plain")
WIDTH_INITS = ("lossless", "duplicate", "random")
DEPTH_INITS = ("identity", "stack", "interpolate")


@dataclass
class LiGOConfig(PeftConfig):
    """Configuration of a LiGO adapter: which source(s) to grow, through which shapes, initialised how.

    The *target* is the model the config is applied to (``get_peft_model(target_model, config)``);
    the sources are loaded with ``AutoModel.from_pretrained`` from ``source_model_name_or_path``
    (a Hub id or a local directory, or a list of them). With ``intermediate_config`` the operator is
    Dual-LiGO: each source is mapped by a private Local stage to that common shape and a shared
    Global stage maps it to the target -- Fed-Grow's split. Without it the operator is plain LiGO.
    """

    source_model_name_or_path: str | list[str] | None = field(
        default=None, metadata={"help": "Hub id or local path of the source checkpoint(s) to grow from."}
    )
    source_revision: str | None = field(default=None, metadata={"help": "Hub revision of the source checkpoint(s)."})
    intermediate_config: dict[str, int] | None = field(
        default=None,
        metadata={
            "help": "Shape of Dual-LiGO's common intermediate model: num_hidden_layers, hidden_size, "
            "intermediate_size, num_attention_heads, and num_key_value_heads and head_dim where they are not "
            "their defaults (heads, hidden_size // heads). A PretrainedConfig is accepted and reduced to these."
        },
    )
    width_structure: str = field(
        default="head_kronecker",
        metadata={
            "help": "'head_kronecker': head-structured Kronecker width factors (small), full matrices where the target "
            "has fewer heads than the source; 'head_groups': the same, but fewer heads k times as wide take groups of "
            "k source heads side by side as Kronecker factors too (smaller and cheaper per step, less to learn with); "
            "'dense': full matrices."
        },
    )
    width_step: str = field(
        default="fan_in",
        metadata={
            "help": "'fan_in': each width factor trains as an offset from its start scaled by 1/fan-in, so an "
            "Adam step changes it by about the learning rate whatever the width (keeps the lossless start); "
            "'plain': the factors train directly (as adapters saved before this option did; an n x n factor "
            "moves up to n x faster)."
        },
    )
    width_init: str = field(
        default="lossless",
        metadata={
            "help": "'lossless' (copies with uneven splits, LEMON-style: exact start, symmetry broken), "
            "'duplicate' (even Net2Net/bert2BERT splits) or 'random'."
        },
    )
    depth_init: str = field(
        default="identity",
        metadata={
            "help": "'identity' (new blocks start as the identity: exact start), 'stack' (StackBERT) or "
            "'interpolate' (both repeat source blocks and change the function of a deeper target)."
        },
    )
    init_noise_std: float = field(
        default=0.0, metadata={"help": "Gaussian noise added to the width factors to break duplication symmetry."}
    )
    init_seed: int = field(default=0, metadata={"help": "Seed of any random part of the initialisation."})
    grow_heads: bool = field(
        default=False,
        metadata={
            "help": "Grow the architecture's task heads (BERT: 'classifier') from the sources' own where every "
            "source is a model of the target's class whose head has the target's shape, so the grown model starts "
            "with the sources' trained head; otherwise the target keeps its own head (modules_to_save)."
        },
    )
    grown_heads: list[str] | None = field(
        default=None,
        metadata={
            "help": "The heads this adapter grows from its sources' (filled in when it is created): on reload the "
            "sources must have them, since the adapter holds no weights of its own for them."
        },
    )
    train_local: bool = field(default=True, metadata={"help": "Train the Local-LiGO stage(s)."})
    train_global: bool = field(default=True, metadata={"help": "Train the Global-LiGO stage."})
    target_config: dict | None = field(
        default=None,
        metadata={
            "help": "The target's config as a dict; filled in when the adapter is created, so that an adapter "
            "directory (with its sources) rebuilds the grown model (fedgrow merge, fedgrow_hf.load_grown)."
        },
    )
    modules_to_save: list[str] | None = field(
        default=None, metadata={"help": "Target modules trained and saved in full, e.g. ['classifier']."}
    )
    record_source_paths: bool = field(
        default=False,
        metadata={
            "help": "Write local source paths into adapter_config.json as they are. By default only the "
            "directory's name is written (Hub ids as they are), so that a shared or pushed adapter does not "
            "reveal the local file system; loading it then needs the sources' locations "
            "(load_grown(sources=...), fedgrow merge --source)."
        },
    )

    source_models: list[Any] | None = field(
        default=None,
        repr=False,
        compare=False,
        metadata={
            "help": "Loaded source models to grow from instead of loading source_model_name_or_path (what "
            "fedgrow_hf.grow hands in). Used once, when the adapter is built; never saved."
        },
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        self.peft_type = LIGO_PEFT_TYPE
        if isinstance(self.intermediate_config, PretrainedConfig):
            table = get_architecture_table(self.intermediate_config)
            self.intermediate_config = ModelShape.from_config(self.intermediate_config, table).to_config_dict()
        if self.intermediate_config is not None:
            unknown = set(self.intermediate_config) - set(SHAPE_FIELDS) - set(OPTIONAL_SHAPE_FIELDS)
            missing = set(SHAPE_FIELDS) - set(self.intermediate_config)
            if unknown or missing:
                raise ValueError(
                    f"intermediate_config must have the keys {SHAPE_FIELDS} (and may have {OPTIONAL_SHAPE_FIELDS}); "
                    f"unknown {sorted(unknown)}, missing {sorted(missing)}"
                )
            self.intermediate_config = {
                name: int(self.intermediate_config[name])
                for name in (*SHAPE_FIELDS, *OPTIONAL_SHAPE_FIELDS)
                if name in self.intermediate_config
            }
        for name, value, allowed in (
            ("width_structure", self.width_structure, WIDTH_STRUCTURES),
            ("width_step", self.width_step, WIDTH_STEPS),
            ("width_init", self.width_init, WIDTH_INITS),
            ("depth_init", self.depth_init, DEPTH_INITS),
        ):
            if value not in allowed:
                raise ValueError(f"LiGOConfig.{name}={value!r} is not one of {allowed}")
        if self.init_noise_std < 0:
            raise ValueError(f"LiGOConfig.init_noise_std must be >= 0, got {self.init_noise_std}")

    @classmethod
    def from_json_file(cls, path_json_file: str, **kwargs: Any) -> dict:
        """PEFT's reader of ``adapter_config.json``; an adapter saved before ``width_step`` existed trained
        its factors directly, so it loads as ``"plain"`` (its stored factors are the factors)."""
        loaded = super().from_json_file(path_json_file, **kwargs)
        loaded.setdefault("width_step", "plain")
        return loaded

    def to_dict(self) -> dict:
        """PEFT's dict of the config, without ``source_models`` (loaded models are state, not configuration)."""
        configuration = copy.copy(self)
        configuration.source_models = None
        as_dict = PeftConfig.to_dict(configuration)
        as_dict.pop("source_models")
        return as_dict

    def take_source_models(self) -> list[Any] | None:
        """The handed-in source models, released from the config: the operator keeps what it needs."""
        models, self.source_models = self.source_models, None
        return models

    def save_pretrained(self, save_directory: str, **kwargs) -> None:
        """PEFT's ``save_pretrained``, writing the sources' names, not local paths, unless asked to.

        PEFT's ``base_model_name_or_path`` (where the target's config came from) is named the same way;
        LiGO rebuilds the target from ``target_config``, never from it.
        """
        recorded = self
        if not self.record_source_paths:
            recorded = copy.copy(self)
            names = [source_name(path) for path in self.source_paths]
            if self.source_model_name_or_path is not None:
                single = isinstance(self.source_model_name_or_path, str)
                recorded.source_model_name_or_path = names[0] if single else names
            if self.base_model_name_or_path:
                recorded.base_model_name_or_path = source_name(self.base_model_name_or_path)
        PeftConfig.save_pretrained(recorded, save_directory, **kwargs)

    @property
    def source_paths(self) -> list[str]:
        paths = self.source_model_name_or_path
        if paths is None:
            return []
        return [paths] if isinstance(paths, str) else list(paths)

    @property
    def is_dual(self) -> bool:
        return self.intermediate_config is not None
