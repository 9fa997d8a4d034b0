"""The comparison presets: one TOML file each in this folder, named after the experiment it describes.

A preset file is a federation config (the schema of ``fedgrow simulate``, docs/config.md) with a
``[reproduce]`` table (:class:`ComparisonSettings`): the seeds and methods the comparison runs, the data
partitions it repeats itself under, and what the report says of it. Its ``[data].source`` is a folder of the
data folder that ``fedgrow reproduce --data-dir`` names, so no preset holds a location of its own. Every
method of the comparison (:mod:`..methods`) derives its config from the same preset config, so the parties,
their sources, the data partition, the seeds and the hyper-parameters are the same for all methods. Why each
value is what it is: the comments in the preset's file and docs/reproduction.md.
"""

from __future__ import annotations

import copy
import difflib
from collections.abc import Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from ...experiment.config import (
    COMPARISON_TABLE,
    MAX_SEED,
    ConfigError,
    DataSettings,
    check_known_keys,
    check_values,
    read_config_file,
    setting,
)
from ..methods import ALL_METHODS, METHODS

PRESET_FOLDER = Path(__file__).parent
COMPARISON_SEEDS = (0, 1, 2)


@dataclass(frozen=True)
class ComparisonSettings:
    """A config file's ``[reproduce]`` table: what ``fedgrow reproduce`` runs on the config, and what its report
    says about it."""

    summary: str = setting("", help="one line saying what is compared (RESULTS.md)")
    budget: str = setting("", help="how long the comparison takes, and on what")
    seeds: tuple[int, ...] = setting(COMPARISON_SEEDS, help=(
        "the comparison's seeds, each in [0, 2^32 - 1], none repeated: each changes initialisation and batch "
        "order, not the data or the sources (the config's `data_seed`); a config file without the table: its "
        "`seed` and the next two"))
    learning_rate_origin: str = setting("", help="where the full-model learning rate comes from (RESULTS.md)")
    methods: tuple[str, ...] = setting(METHODS, help=(
        "the methods compared (`fedgrow reproduce --help` lists them); default: the LiGO regime's"))
    partitions: dict[str, dict[str, Any]] | None = setting(None, help=(
        "name = {[data] settings}: the whole comparison once per partition, into one results.json"))
    scaling: dict[str, tuple[Any, Any]] | None = setting(None, help=(
        "setting = [the original's value, this config's]: what the comparison scales down (RESULTS.md)"))

    @classmethod
    def from_table(cls, table: Any, where: str, defaults: Mapping[str, Any] | None = None) -> ComparisonSettings:
        """The settings of a ``[reproduce]`` table read from ``where`` (``defaults`` for those it leaves out);
        :class:`ConfigError` names a wrong one."""
        if not isinstance(table, Mapping):
            raise ConfigError(f"[{COMPARISON_TABLE}] of {where} must be a table of settings, got {table!r}")
        check_known_keys(table, {spec.name for spec in fields(cls)}, f"keys in [{COMPARISON_TABLE}] of {where}")
        values = {**(defaults or {}), **table}
        for name in ("seeds", "methods"):
            if isinstance(values.get(name), list):
                values[name] = tuple(values[name])
        if isinstance(values.get("scaling"), dict):
            values["scaling"] = {key: tuple(pair) if isinstance(pair, list) else pair
                                 for key, pair in values["scaling"].items()}
        settings = cls(**values)
        check_values(settings, f"{where}: {COMPARISON_TABLE}")
        settings._check_choices(where)
        return settings

    def _check_choices(self, where: str) -> None:
        section = f"{where}: {COMPARISON_TABLE}"
        if not self.seeds or len(set(self.seeds)) != len(self.seeds) or not all(
                0 <= seed <= MAX_SEED for seed in self.seeds):
            raise ConfigError(f"{section}.seeds={list(self.seeds)} needs at least one seed in [0, {MAX_SEED}], "
                              "none repeated")
        for method in self.methods:
            if method not in ALL_METHODS:
                close = difflib.get_close_matches(method, ALL_METHODS, n=1)
                hint = f"did you mean {close[0]!r}?" if close else f"methods: {', '.join(ALL_METHODS)}"
                raise ConfigError(f"{section}.methods: unknown method {method!r}; {hint}")
        for name, data in (self.partitions or {}).items():
            if not isinstance(data, dict):
                raise ConfigError(f"{section}.partitions.{name} must be a table of [data] settings, got {data!r}")
            check_known_keys(data, {spec.name for spec in fields(DataSettings)},
                             f"keys in {section}.partitions.{name} ([data] settings)")


@dataclass(frozen=True)
class Preset:
    """A named comparison: its federation config as its file holds it, and its ``[reproduce]`` table."""

    name: str
    config: dict[str, Any]
    settings: ComparisonSettings

    def federation_config(self, data_dir: str | Path) -> dict[str, Any]:
        """The federation config (``FederationConfig.from_dict``'s input) with its data under ``data_dir``, joined
        as given (``../shared/data`` stays relative): a kept run is reused only for an equal config."""
        config = copy.deepcopy(self.config)
        config["data"]["source"] = str(Path(data_dir) / config["data"]["source"])
        return config


def load_preset(path: Path) -> Preset:
    """The preset in ``path``: a federation config named as its file, with a ``[reproduce]`` table."""
    raw = read_config_file(path)
    if raw.get("name") != path.stem:
        raise ConfigError(f"{path}: a preset's name is its file's ({path.stem!r}), got name = {raw.get('name')!r}")
    if COMPARISON_TABLE not in raw:
        raise ConfigError(f"{path}: a preset needs a [{COMPARISON_TABLE}] table (its seeds, methods and summary)")
    if not isinstance(raw.get("data"), dict) or not raw["data"].get("source"):
        raise ConfigError(f"{path}: a preset's [data].source names a folder of the data folder (--data-dir)")
    settings = ComparisonSettings.from_table(raw.pop(COMPARISON_TABLE), str(path))
    return Preset(path.stem, raw, settings)


PRESETS: dict[str, Preset] = {path.stem: load_preset(path) for path in sorted(PRESET_FOLDER.glob("*.toml"))}


def preset_config(name: str, data_dir: str | Path) -> dict[str, Any]:
    """The federation config (a dict, ``FederationConfig.from_dict`` schema) of preset ``name``."""
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; presets: {', '.join(PRESETS)}")
    return PRESETS[name].federation_config(data_dir)
