"""Run a whole comparison: every method on one preset (or a user's federation config), then write it up."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from ..federated.config import FederationConfig
from .methods import METHODS, majority_class_reference, run_method
from .presets import PRESETS, preset_config
from .report import RESULTS_FILE, environment, headline, summarise, write_plots, write_report, write_results


def load_comparison_config(preset: str, data_dir: str | Path) -> tuple[FederationConfig, str]:
    """A preset's config (its data under ``data_dir``) or a federation config file; and its summary."""
    if preset in PRESETS:
        return FederationConfig.from_dict(preset_config(preset, data_dir)), PRESETS[preset].summary
    if Path(preset).is_file():
        config = FederationConfig.load(preset)
        return config, f"federation config `{preset}` ({config.num_parties} parties)"
    raise ValueError(f"{preset!r} is neither a preset ({', '.join(PRESETS)}) nor a federation config file")


def reproduce(
    preset: str,
    *,
    data_dir: str | Path,
    output_dir: str | Path,
    work_dir: str | Path,
    report_path: str | Path | None = None,
    methods: Sequence[str] = METHODS,
    command: str = "",
    cpus_per_party: float = 1.0,
    resume: bool = False,
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Run ``methods`` on ``preset``; write ``results.json`` and plots to ``output_dir`` and regenerate
    ``report_path`` (default: ``RESULTS.md`` beside the folder holding ``output_dir``).

    Run folders (the federation's ``metrics.jsonl``, party folders, cached pretrained sources) go to
    ``work_dir``, so ``output_dir`` holds only the figures. Each finished method's summary is kept in
    ``work_dir/<method>.json``; with ``resume``, a method whose kept summary was measured with the same
    config is not run again (so a long comparison that stopped half-way continues).
    """
    config, summary = load_comparison_config(preset, data_dir)
    work_dir, output_dir = Path(work_dir).resolve(), Path(output_dir)
    config.data.source_cache = str(work_dir / "sources")
    work_dir.mkdir(parents=True, exist_ok=True)
    started, wall = datetime.now(timezone.utc), time.monotonic()
    measured = {}
    for method in methods:
        kept = work_dir / f"{method}.json"
        if resume and kept.is_file():
            saved = json.loads(kept.read_text(encoding="utf-8"))
            if saved["config"] == config.to_dict():
                measured[method] = saved["summary"]
                log(f"{config.name}/{method}: measured before (same config), kept from {kept}")
                continue
        log(f"{config.name}/{method}: running")

        def on_round(report: dict[str, Any], method: str = method) -> None:
            log(f"{config.name}/{method}: {report['phase']} round {report['round']}: "
                f"mean accuracy {report['accuracy']:.4f}")

        run = run_method(config, method, work_dir, cpus_per_party=cpus_per_party, on_round=on_round)
        measured[method] = summarise(run)
        kept.write_text(json.dumps({"config": config.to_dict(), "summary": measured[method]}), encoding="utf-8")
        log(f"{config.name}/{method}: accuracy {measured[method]['accuracy']['mean']:.4f} "
            f"({run.wall_seconds:.0f} s)")
    results = {
        "preset": config.name,
        "summary": summary,
        "command": command,
        "started": started.strftime("%Y-%m-%d %H:%M UTC"),
        "finished": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "wall_seconds": round(time.monotonic() - wall, 1),
        "config": config.to_dict(),
        "seeds": {"seed": config.seed, "note": "partition, sources, initialisation and training all derive from it"},
        "environment": environment(),
        "headline": headline(measured),
        "majority_class": majority_class_reference(config),
        "methods": measured,
    }
    write_results(output_dir, results)
    report = rewrite_report(output_dir, report_path)
    log(f"wrote {output_dir / RESULTS_FILE}, plots and {report}")
    return results


def rewrite_report(output_dir: str | Path, report_path: str | Path | None = None) -> Path:
    """Redraw ``output_dir``'s plots from its ``results.json`` and regenerate ``RESULTS.md``
    (default: beside the folder holding ``output_dir``) from every preset's results; nothing is rerun."""
    output_dir = Path(output_dir)
    results_file = output_dir / RESULTS_FILE
    if not results_file.is_file():
        raise FileNotFoundError(f"{results_file} does not exist: run the comparison first")
    results = json.loads(results_file.read_text(encoding="utf-8"))
    if "majority_class" not in results:  # results written before this reference existed: derive it from the
        # recorded config (the partition is a function of config and seed; no method is rerun)
        results["majority_class"] = majority_class_reference(FederationConfig.from_dict(results["config"]))
        write_results(output_dir, results)
    write_plots(output_dir, results)
    report = Path(report_path) if report_path else output_dir.resolve().parent.parent / "RESULTS.md"
    return write_report(output_dir.resolve().parent, report, pending=pending_commands())


def pending_commands() -> dict[str, str]:
    """How to measure each preset (listed in RESULTS.md while a preset has no results)."""
    return {
        name: f"`fedgrow reproduce {name}` from the repository root (expected: {preset.budget})"
        for name, preset in PRESETS.items() if name != "tiny"
    }
