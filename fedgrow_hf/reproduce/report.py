"""From measured runs to figures: per-method summaries, ``results.json``, PNG plots and ``RESULTS.md``.

Nothing here estimates a figure: every number comes from a method's records (the federation's
``metrics.jsonl`` lines, or the independent runs' evaluations) or from counting parameters.
``RESULTS.md`` is regenerated from the ``results.json`` files alone, so it never drifts from them.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

from ..federated.config import FederationConfig
from ..federated.task import finetune_learning_rate, training_options
from .methods import METHOD_LABELS, MethodRun

RESULTS_FILE = "results.json"
PLOTS = {"rounds": "accuracy_vs_rounds.png", "bytes": "accuracy_vs_bytes.png"}
VERSIONED = ("fedgrow-hf", "torch", "transformers", "peft", "flwr", "datasets", "numpy")


def summarise(run: MethodRun) -> dict[str, Any]:
    """Curves and final figures of one method (mean ± population std across parties)."""
    curve, sent = [], 0
    for point, record in enumerate(run.records, start=1):
        parties = record["parties"].values()
        sent += sum(p["bytes_up"] + p["bytes_down"] for p in parties)
        curve.append({
            "point": point,
            "phase": record["phase"],
            "round": record["round"],
            "accuracy": float(np.mean([p["accuracy"] for p in parties])),
            "precision_macro": float(np.mean([p["precision_macro"] for p in parties])),
            "cumulative_bytes": sent,
        })
    final = run.records[-1]["parties"]
    accuracy = [final[p]["accuracy"] for p in sorted(final, key=int)]
    precision = [final[p]["precision_macro"] for p in sorted(final, key=int)]
    uploads = [p["bytes_up"] for r in run.records for p in r["parties"].values() if p["bytes_up"]]
    communicating = [r for r in run.records if any(p["bytes_up"] for p in r["parties"].values())]
    return {
        "label": METHOD_LABELS[run.method],
        "accuracy": {"mean": float(np.mean(accuracy)), "std": float(np.std(accuracy)), "per_party": accuracy},
        "precision_macro": {"mean": float(np.mean(precision)), "std": float(np.std(precision)),
                            "per_party": precision},
        "trainable_parameters": run.trainable_parameters,
        "shared_parameters": run.shared_parameters,
        "bytes_up_per_party_round": max(uploads, default=0),
        "bytes_per_round": (
            float(np.mean([sum(p["bytes_up"] + p["bytes_down"] for p in r["parties"].values()) for r in communicating]))
            if communicating else 0.0
        ),
        "communication_rounds": len(communicating),
        "bytes_total": sent,
        "local_steps_per_party": run.steps_per_party,
        "wall_seconds": round(run.wall_seconds, 1),
        "curve": curve,
        "records": run.records,
        "notes": run.notes,
    }


def headline(methods: dict[str, dict[str, Any]]) -> dict[str, float]:
    """Fed-Grow against Fed-Scratch (and Independent growth): the ratios the README quotes."""
    if "fed-grow" not in methods or "fed-scratch" not in methods:
        return {}
    grow, scratch = methods["fed-grow"], methods["fed-scratch"]
    figures = {
        "bytes_total_vs_fed_scratch": grow["bytes_total"] / scratch["bytes_total"],
        "bytes_up_per_party_round_vs_fed_scratch": grow["bytes_up_per_party_round"] / scratch["bytes_up_per_party_round"],
        "phase1_trainable_parameters_vs_fed_scratch": (
            grow["trainable_parameters"]["phase1_mean"] / scratch["trainable_parameters"]["phase1_mean"]
        ),
        "shared_parameters_vs_fed_scratch": grow["shared_parameters"] / scratch["shared_parameters"],
        "accuracy_delta_vs_fed_scratch": grow["accuracy"]["mean"] - scratch["accuracy"]["mean"],
        "precision_delta_vs_fed_scratch": grow["precision_macro"]["mean"] - scratch["precision_macro"]["mean"],
    }
    if "independent" in methods:
        figures["accuracy_delta_vs_independent"] = grow["accuracy"]["mean"] - methods["independent"]["accuracy"]["mean"]
    return figures


def environment() -> dict[str, Any]:
    """Package versions, git commit and machine of the run."""
    versions = {}
    for name in VERSIONED:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "not installed"
    here = Path(__file__).parent
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, check=True,
                                cwd=here).stdout.strip()
        # only the package's own code counts: results written beside it are not what measured them
        changed = subprocess.run(["git", "status", "--porcelain", "--", str(here.parent)], capture_output=True,
                                 text=True, check=True, cwd=here).stdout.strip()
        commit += " (with uncommitted changes to fedgrow_hf)" if changed else ""
    except (OSError, subprocess.CalledProcessError):
        commit = "unknown"
    import torch

    device = torch.cuda.get_device_name(0) if torch.cuda.is_available() else f"CPU ({os.cpu_count()} cores)"
    return {"versions": versions, "python": platform.python_version(), "git_commit": commit,
            "machine": f"{platform.machine()} {platform.system()}, {device}"}


def write_results(output_dir: Path, results: dict[str, Any]) -> Path:
    output_dir.mkdir(parents=True, exist_ok=True)
    path = output_dir / RESULTS_FILE
    path.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    return path


def write_plots(output_dir: Path, results: dict[str, Any]) -> list[Path]:
    """Mean held-out accuracy across parties against evaluation point and against cumulative bytes."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    paths = []
    for kind, filename in PLOTS.items():
        figure, axes = plt.subplots(figsize=(6.4, 4.2))
        for summary in results["methods"].values():
            curve = summary["curve"]
            xs = [p["point"] if kind == "rounds" else p["cumulative_bytes"] / 2**20 for p in curve]
            axes.plot(xs, [p["accuracy"] for p in curve], marker="o", label=summary["label"])
        if "majority_class" in results:
            axes.axhline(results["majority_class"]["mean"], color="gray", linestyle="--", linewidth=1,
                         label="majority class (reference)")
        if kind == "rounds":
            axes.set_xlabel("round (last point: after phase 2 / the last FedAvg round)")
        else:
            axes.set_xscale("symlog", linthresh=0.01)
            axes.set_xlabel("cumulative MiB sent, all parties, up + down (symlog; 0 = nothing sent)")
        axes.set_ylabel("mean held-out accuracy across parties")
        axes.set_title(f"{results['preset']}: accuracy vs {kind}")
        axes.grid(alpha=0.3)
        axes.legend(fontsize=8)
        figure.tight_layout()
        path = output_dir / filename
        figure.savefig(path, dpi=110)
        plt.close(figure)
        paths.append(path)
    return paths


def _human_bytes(size: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:.1f} {unit}" if unit != "B" else f"{size:.0f} B"
        size /= 1024
    return f"{size:.1f} GiB"


def _human_count(count: float) -> str:
    return f"{count / 1e6:.2f} M" if count >= 1e5 else f"{count / 1e3:.1f} k"


def _learning_rates(recorded: dict[str, Any]) -> str:
    config = FederationConfig.from_dict(recorded)
    options = training_options(config)
    return (f"Learning rates: operator {options['learning_rate']:g}, full model {finetune_learning_rate(config):g}; "
            f"batch size {options['per_device_train_batch_size']}.")


def preset_section(results: dict[str, Any], results_dir: str) -> str:
    """The RESULTS.md section of one preset: table, ratios, where Fed-Grow loses, plots, command."""
    methods = results["methods"]
    lines = [
        f"## `{results['preset']}`",
        "",
        results["summary"],
        "",
        f"Command: `{results['command']}`  ",
        f"Measured {results['finished']} on {results['environment']['machine']}, git commit "
        f"`{results['environment']['git_commit']}`, seed {results['config']['seed']}, total "
        f"{results['wall_seconds'] / 60:.1f} min.  ",
        _learning_rates(results["config"]),
        "",
        "| Method | Accuracy | Macro precision | Trainable params (phase 1, mean/party) | Shared params | "
        "Upload/party/round | Bytes/round (all) | Bytes total | Local steps/party | Wall time |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for summary in methods.values():
        acc, prec = summary["accuracy"], summary["precision_macro"]
        lines.append(
            f"| {summary['label']} | {acc['mean']:.4f} ± {acc['std']:.4f} | {prec['mean']:.4f} ± {prec['std']:.4f} | "
            f"{_human_count(summary['trainable_parameters']['phase1_mean'])} | "
            f"{_human_count(summary['shared_parameters']) if summary['shared_parameters'] else '0'} | "
            f"{_human_bytes(summary['bytes_up_per_party_round'])} | {_human_bytes(summary['bytes_per_round'])} | "
            f"{_human_bytes(summary['bytes_total'])} | {summary['local_steps_per_party']} | "
            f"{summary['wall_seconds']:.0f} s |"
        )
    lines += ["", "Accuracy and macro precision: each party's grown model after phase 2 (Fed-Scratch: after "
              "its last local FedAvg round), on the party's own held-out share; mean ± std across parties. "
              "Per-party figures, every round's records and the configs are in "
              f"[`{results_dir}/results.json`]({results_dir}/results.json).", ""]
    figures = results.get("headline", {})
    if figures:
        lines += [
            "Fed-Grow vs Fed-Scratch (measured): total bytes "
            f"{figures['bytes_total_vs_fed_scratch']:.2%} of Fed-Scratch's "
            f"({1 - figures['bytes_total_vs_fed_scratch']:.2%} less); one party's upload per round "
            f"{figures['bytes_up_per_party_round_vs_fed_scratch']:.2%}; phase-1 trainable parameters "
            f"{figures['phase1_trainable_parameters_vs_fed_scratch']:.2%}; shared parameters "
            f"{figures['shared_parameters_vs_fed_scratch']:.2%}; accuracy "
            f"{figures['accuracy_delta_vs_fed_scratch'] * 100:+.2f} points; macro precision "
            f"{figures['precision_delta_vs_fed_scratch'] * 100:+.2f} points.",
            "",
        ]
    if "majority_class" in results:
        majority = results["majority_class"]
        lines += [f"Majority-class reference (always predict the party's most frequent training label): accuracy "
                  f"{majority['mean']:.4f} (per party {', '.join(f'{a:.4f}' for a in majority['per_party'])}). "
                  "Under label skew it is far above chance; a method near it learnt little beyond the label prior "
                  "(in a binary task, a party whose macro precision is half its accuracy predicts one class only).",
                  ""]
    lines += _losses(methods)
    lines += _phase2_effects(methods)
    skipped = [label for name, label in METHOD_LABELS.items() if name not in methods]
    if skipped:
        lines += [f"Not run for this preset (no figures): {', '.join(skipped)}; "
                  f"`fedgrow reproduce {results['preset']}` runs every method.", ""]
    notes = [f"{summary['label']}: {note}" for summary in methods.values() for note in summary["notes"]]
    lines += [f"Note: {note}" for note in notes] + ([""] if notes else [])
    lines += [f"![accuracy vs rounds]({results_dir}/{PLOTS['rounds']}) "
              f"![accuracy vs bytes]({results_dir}/{PLOTS['bytes']})", ""]
    return "\n".join(lines)


def _losses(methods: dict[str, dict[str, Any]]) -> list[str]:
    """Every method that beats Fed-Grow's mean accuracy or mean macro precision, named."""
    if "fed-grow" not in methods:
        return []
    lines = []
    for metric, label in (("accuracy", "accuracy"), ("precision_macro", "macro precision")):
        ours = methods["fed-grow"][metric]["mean"]
        better = [f"{other['label']} ({other[metric]['mean']:.4f})" for name, other in methods.items()
                  if name != "fed-grow" and other[metric]["mean"] > ours]
        if better:
            lines.append(f"Where Fed-Grow loses: its mean {label} ({ours:.4f}) is below {', '.join(better)}.")
    return [*lines, ""] if lines else []


def _phase2_effects(methods: dict[str, dict[str, Any]]) -> list[str]:
    """How phase 2 (local fine-tuning of the merged model) moved each growing method's mean accuracy."""
    effects = [
        f"{summary['label']} {curve[-2]['accuracy']:.4f} -> {curve[-1]['accuracy']:.4f}"
        for summary in methods.values()
        if len(curve := summary["curve"]) > 1 and curve[-1]["phase"] == "finetune-local"
    ]
    if not effects:
        return []
    return [f"Phase 2 (mean accuracy after the last phase-1 round -> after phase 2): {'; '.join(effects)}.", ""]


REPORT_HEADER = """# Fed-Grow vs baselines: measured results

Generated by `fedgrow reproduce` from `benchmarks/results/<preset>/results.json`; do not edit by hand.

Methods (same parties, sources, data partition, seeds, learning rates, batch size and local steps per party
for all; no hyper-parameter was tuned per method). Two learning rates are set by what is trained, not by
method: the operator's (phase 1 of the growth methods) and the full model's (phase 2 of every method and all
of Fed-Scratch); each preset section lists both.

- **Fed-Grow**: Dual-LiGO; only the Global-LiGO is averaged (Flower FedAvg, example-weighted) for R rounds,
  then every party merges its grown model and fine-tunes it alone (phase 2).
- **Fed-Scratch**: FedAvg of the full target model from one seeded random initialisation, for as many local
  steps per party as Fed-Grow's two phases together.
- **Independent growth**: every party grows its own source with plain LiGO, alone, for the same steps, then
  the same phase 2; nothing is sent.
- **FedAvg of whole operator (same source)**: every party holds the same source (the preset's largest one),
  the Local-LiGO is the frozen identity, so the whole trainable operator is averaged: an upper reference that
  assumes a shared source.

Every party is evaluated on its own held-out share of its data (20%; under the Dirichlet split the label
skew included). Macro precision averages over every class present in a party's held-out labels or
predictions, a class never predicted counting 0 (scikit-learn's definition): under strong label skew it is
far below accuracy. In phase-1 rounds a party's accuracy is that of its LiGO model (the same function as
its merged grown model). The same-source reference gives every party party 0's source; in `vision-small`
that source was pretrained on party 0's own label-skewed share only, and the reference did not act as an
upper bound there. Bytes are the serialised arrays the federation moved (Flower `ArrayRecord` payloads,
up + down). Wall times are from a 2-core machine and indicative only; they include Ray start-up for the
federated methods, which run two parties at a time, while Independent growth trains its parties one after
another in one process.
"""


def write_report(results_root: Path, report_path: Path, pending: dict[str, str] | None = None) -> Path:
    """Regenerate ``RESULTS.md`` from every ``<results_root>/<preset>/results.json``.

    ``pending`` maps presets without results to how to produce them (Markdown).
    """
    sections = [REPORT_HEADER]
    for path in sorted(results_root.glob(f"*/{RESULTS_FILE}")):
        results = json.loads(path.read_text(encoding="utf-8"))
        sections.append(preset_section(results, _relative(path.parent, report_path.parent)))
    done = {path.parent.name for path in results_root.glob(f"*/{RESULTS_FILE}")}
    missing = {name: how for name, how in (pending or {}).items() if name not in done}
    if missing:
        sections.append("## Not run\n")
        sections += [f"- `{name}`: not measured yet; run {how}." for name, how in missing.items()]
        sections.append("")
    report_path.parent.mkdir(parents=True, exist_ok=True)
    report_path.write_text("\n".join(sections), encoding="utf-8")
    return report_path


def _relative(path: Path, start: Path) -> str:
    """``path`` as a link from a file in ``start`` (absolute when it is not below ``start``)."""
    try:
        return path.resolve().relative_to(start.resolve()).as_posix()
    except ValueError:
        return path.resolve().as_posix()
