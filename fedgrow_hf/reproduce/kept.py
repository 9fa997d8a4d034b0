"""What a comparison keeps on disk so that a killed or interrupted run resumes: one JSON file per measured
piece (a method's run for a seed, a learning-rate search, one party's score at one rate of a search), holding
the summary beside the config it was measured with.

A kept piece is reused only under ``resume`` and only for the same config in all it measures
(:func:`same_config`), so a resumed comparison never mixes figures of different settings; what the config does
not say (how a search scores a rate, say) is checked by the caller's ``still_valid``. The comparison of
``paper-agnews`` spans several sittings, some on other machines, so the smaller the piece kept, the less a
sitting that ends mid-way loses.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..experiment.config import ConfigError, FederationConfig


def kept_or_run(
    kept: Path, config: FederationConfig, resume: bool, log: Callable[[str], None], what: str,
    run: Callable[[FederationConfig], dict[str, Any]], still_valid: Callable[[dict[str, Any]], bool] | None = None,
) -> dict[str, Any]:
    """``run(config)``, or with ``resume`` what :func:`kept_summary` finds; keeps the result."""
    summary = kept_summary(kept, config, resume, log, what, still_valid)
    if summary is None:
        log(f"{config.name}/{what}: running")
        summary = keep(kept, config, run(config))
    return summary


def kept_summary(
    kept: Path, config: FederationConfig, resume: bool, log: Callable[[str], None], what: str,
    still_valid: Callable[[dict[str, Any]], bool] | None = None,
) -> dict[str, Any] | None:
    """With ``resume``, what a run with the same config kept in ``kept`` (and that ``still_valid`` accepts: a kept
    result of a procedure since changed is not reused); else None."""
    if resume and kept.is_file():
        saved = json.loads(kept.read_text(encoding="utf-8"))
        if same_config(saved["config"], config) and (still_valid is None or still_valid(saved["summary"])):
            log(f"{config.name}/{what}: measured before (same config), kept from {kept}")
            return saved["summary"]
    return None


def same_config(saved: dict[str, Any], config: FederationConfig) -> bool:
    """Whether a kept run's config is ``config`` (:meth:`FederationConfig.read_back`) in all it measures; one the
    current code refuses is not the same."""
    try:
        return _measured(FederationConfig.read_back(saved)) == _measured(config.to_dict())
    except ConfigError:
        return False


def _measured(config: dict[str, Any]) -> dict[str, Any]:
    """``config`` without where its sources are cached (the work folder's): sources are cached by their recipe,
    so the folder changes nothing measured, and runs kept in one work folder resume from a copy of their
    summaries in another (a comparison that spans sittings on different machines)."""
    return {**config, "data": {key: value for key, value in config["data"].items() if key != "source_cache"}}


def keep(kept: Path, config: FederationConfig, summary: dict[str, Any]) -> dict[str, Any]:
    """Write ``summary`` with the config it was measured with to ``kept``, for a later ``resume``; return it."""
    kept.parent.mkdir(parents=True, exist_ok=True)
    kept.write_text(json.dumps({"config": config.to_dict(), "summary": summary}), encoding="utf-8")
    return summary
