"""A Flower app's federation config and run folder: given to the app's factory, or named (and overridden
setting by setting) by Flower's run config (``[tool.flwr.app.config]``, ``flwr run --run-config``)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ..experiment.config import ConfigError, FederationConfig

RUN_CONFIG_PATH_KEY = "config"
RUN_CONFIG_RUN_DIR_KEY = "run-dir"
RUN_CONFIG_RESUME_KEY = "resume"
# The keys of Flower's run config that the app reads itself, with what each means (docs/config.md renders them);
# every other key overrides one setting of the federation config.
RUN_CONFIG_APP_HELP = {
    RUN_CONFIG_PATH_KEY: "required: the federation config file, best an absolute path (the apps run in processes "
                         "that the SuperLink and the SuperNodes start, not in the app's folder)",
    RUN_CONFIG_RUN_DIR_KEY: "the run folder (default: runs/NAME, NAME the config's)",
    RUN_CONFIG_RESUME_KEY: "true: continue from the run folder's last checkpoint",
}
RUN_CONFIG_APP_KEYS = tuple(RUN_CONFIG_APP_HELP)


def resolve_run(
    run_config: Mapping[str, Any], config: FederationConfig | None, run_dir: str | Path | None
) -> tuple[FederationConfig, Path]:
    """The config and run folder of a Flower app: given to its factory, else from Flower's run config.

    With ``flwr run``, ``[tool.flwr.app.config]`` names the federation config file (``config``) and
    optionally the run folder (``run-dir``, default ``runs/<name>``); any other key overrides one setting
    of that file, flat as Flower passes it (:func:`apply_run_overrides`).
    """
    if config is None:
        if RUN_CONFIG_PATH_KEY not in run_config:
            raise ConfigError(f"the Flower run config has no {RUN_CONFIG_PATH_KEY!r} (path of the federation config)")
        config = apply_run_overrides(FederationConfig.load(str(run_config[RUN_CONFIG_PATH_KEY])), run_config)
    run_dir = run_dir or run_config.get(RUN_CONFIG_RUN_DIR_KEY) or f"runs/{config.name}"
    return config, Path(str(run_dir))


def apply_run_overrides(config: FederationConfig, run_config: Mapping[str, Any]) -> FederationConfig:
    """``config`` with the settings that Flower's run config overrides, validated as a whole.

    Flower flattens ``[tool.flwr.app.config]`` to ``section.key`` names (``federation.rounds = 3`` or
    ``flwr run . --run-config "federation.local-steps=20"``); a ``-`` stands for ``_`` as in Flower's
    own templates. Top-level settings (``seed``, ``name``) have no section. An unknown name is an error
    of :meth:`FederationConfig.from_dict`, like an unknown key in the file.
    """
    settings = config.to_dict()
    for name, value in run_config.items():
        if name in RUN_CONFIG_APP_KEYS:
            continue
        *sections, key = name.replace("-", "_").split(".")
        table = settings
        for section in sections:
            if not isinstance(table.get(section), dict):
                raise ConfigError(f"run config {name!r}: the federation config has no table {section!r}")
            table = table[section]
        table[key] = value
    return FederationConfig.from_dict(settings)
