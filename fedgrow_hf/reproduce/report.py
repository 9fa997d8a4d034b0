"""From measured runs to figures: per-method summaries, ``results.json``, PNG plots and ``RESULTS.md``.

Nothing here estimates a figure: every number comes from a method's records (the federation's
``metrics.jsonl`` lines, or the in-process runs' evaluations), from scoring the final models on the common
test split, or from counting parameters.
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

from ..experiment.config import FederationConfig
from ..experiment.training import finetune_learning_rate, training_options
from .methods import METHOD_LABELS, METHODS, OWN_SOURCE, MethodRun
from .tuning import method_learning_rate

RESULTS_FILE = "results.json"
RESULTS_KIND = "fedgrow reproduce"  # marks a comparison's results.json among other benchmarks' results
PARTITIONED_KIND = "fedgrow reproduce, partitions"  # one comparison per data partition (paper-agnews)
# the issue's target: Fed-Grow reaches Fed-Scratch's final accuracy within this share of Fed-Scratch's steps
SCRATCH_STEP_SHARE = 0.4
PLOTS = {"steps": "accuracy_vs_steps.png", "bytes": "accuracy_vs_bytes.png"}
SEED_METRICS = ("test_accuracy", "test_f1_macro", "test_precision_macro", "accuracy", "precision_macro")  # per party, for every seed
COST_FIELDS = ("trainable_parameters", "shared_parameters", "bytes_up_per_party_round", "bytes_per_round",
               "communication_rounds", "bytes_total", "local_steps_per_party", "notes")  # the same for every seed
VERSIONED = ("fedgrow-hf", "torch", "transformers", "peft", "flwr", "datasets", "numpy")


def seed_summary(run: MethodRun) -> dict[str, Any]:
    """The figures of one method's run with one seed: per-party final figures (held-out share and common
    test split), the curve of mean held-out accuracy over local steps, bytes and parameters."""
    curve, sent = [], 0
    for point, record in enumerate(run.records, start=1):
        parties = record["parties"].values()
        sent += sum(p["bytes_up"] + p["bytes_down"] for p in parties)
        curve.append({
            "point": point,
            "phase": record["phase"],
            "round": record["round"],
            "steps": record["steps"],
            "accuracy": float(np.mean([p["accuracy"] for p in parties])),
            "precision_macro": float(np.mean([p["precision_macro"] for p in parties])),
            "cumulative_bytes": sent,
        })
    final = run.records[-1]["parties"]
    uploads = [p["bytes_up"] for r in run.records for p in r["parties"].values() if p["bytes_up"]]
    communicating = [r for r in run.records if any(p["bytes_up"] for p in r["parties"].values())]
    return {
        "seed": run.seed,
        "accuracy": [final[p]["accuracy"] for p in sorted(final, key=int)],
        "precision_macro": [final[p]["precision_macro"] for p in sorted(final, key=int)],
        "test_accuracy": [scores["accuracy"] for scores in run.test],
        "test_f1_macro": [scores["f1_macro"] for scores in run.test],
        "test_precision_macro": [scores["precision_macro"] for scores in run.test],
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
        "cpu_seconds": round(run.cpu_seconds, 1),
        "curve": curve,
        "records": run.records,
        "notes": run.notes,
    }


def seed_statistics(values: list[list[float]]) -> dict[str, Any]:
    """Per-seed x per-party figures -> mean and sample std (n - 1) over seeds of the per-seed mean across
    parties (std None for one seed), the per-seed means, each party's mean over seeds, and the spread
    across parties (population std across parties, mean over seeds)."""
    per_seed = [float(np.mean(parties)) for parties in values]
    return {
        "mean": float(np.mean(per_seed)),
        "std": float(np.std(per_seed, ddof=1)) if len(per_seed) > 1 else None,
        "per_seed": per_seed,
        "per_party": [float(value) for value in np.mean(values, axis=0)],
        "party_std": float(np.mean([np.std(parties) for parties in values])),
        "values": values,
    }


def summarise(method: str, per_seed: list[dict[str, Any]]) -> dict[str, Any]:
    """One method over all seeds (:func:`seed_summary` each): statistics of every metric, costs (the same
    for every seed: they depend on shapes and steps only), the curve averaged over seeds, and every run."""
    curves = [summary["curve"] for summary in per_seed]
    return {
        "label": METHOD_LABELS[method],
        **{metric: seed_statistics([summary[metric] for summary in per_seed]) for metric in SEED_METRICS},
        **{name: per_seed[0][name] for name in COST_FIELDS},
        "wall_seconds": round(sum(summary["wall_seconds"] for summary in per_seed), 1),
        "cpu_seconds": round(sum(summary.get("cpu_seconds", 0.0) for summary in per_seed), 1),
        "curve": [
            {**points[0], **{key: float(np.mean([p[key] for p in points])) for key in ("accuracy", "precision_macro")}}
            for points in zip(*curves)
        ],
        "runs": [{key: summary.get(key) for key in ("seed", "wall_seconds", "cpu_seconds", "curve", "records")}
                 for summary in per_seed],
    }


def paired_differences(methods: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Fed-Grow minus every other method in mean common-test accuracy across parties, seed by seed (every
    method runs with the same seeds, so seed s of one pairs with seed s of the other)."""
    if "fed-grow" not in methods:
        return {}
    ours = methods["fed-grow"]["test_accuracy"]["per_seed"]
    differences = {}
    for name, other in methods.items():
        if name != "fed-grow":
            per_seed = [a - b for a, b in zip(ours, other["test_accuracy"]["per_seed"], strict=True)]
            differences[name] = {
                "mean": float(np.mean(per_seed)),
                "std": float(np.std(per_seed, ddof=1)) if len(per_seed) > 1 else None,
                "per_seed": per_seed,
                "fed_grow_better": sum(value > 0 for value in per_seed),
            }
    return differences


def steps_to_reach(curve: list[dict[str, Any]], accuracy: float) -> int | None:
    """Local steps per party after which a curve first reaches ``accuracy`` (None: never)."""
    return next((point["steps"] for point in curve if point["accuracy"] >= accuracy), None)


def issue_targets(methods: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """The issue's targets for Fed-Grow, each with ``met`` (None when a method it needs was not run),
    what was measured and, when missed, by how much."""
    return [_at_least(methods, "own-source"), _at_least(methods, "independent"), _spread(methods), _speed(methods)]


def _target(key: str, text: str, met: bool | None, measured: str, missed_by: str = "") -> dict[str, Any]:
    return {"key": key, "target": text, "met": met, "measured": measured,
            "missed_by": missed_by if met is False else ""}


def _at_least(methods: dict[str, dict[str, Any]], other: str) -> dict[str, Any]:
    key, label = f"test-accuracy-vs-{other}", METHOD_LABELS[other]
    text = f"Fed-Grow's mean common-test accuracy >= {label}'s"
    if "fed-grow" not in methods or other not in methods:
        return _target(key, text, None, "not measured")
    ours, theirs = methods["fed-grow"]["test_accuracy"]["mean"], methods[other]["test_accuracy"]["mean"]
    return _target(key, text, ours >= theirs, f"{ours:.4f} vs {theirs:.4f} ({(ours - theirs) * 100:+.2f} points)",
                   f"{(theirs - ours) * 100:.2f} points of accuracy")


def _spread(methods: dict[str, dict[str, Any]]) -> dict[str, Any]:
    key = "party-spread-vs-independent"
    text = ("Fed-Grow's spread of common-test accuracy across parties (std across parties, mean over seeds) "
            "<= Independent growth's")
    if "fed-grow" not in methods or "independent" not in methods:
        return _target(key, text, None, "not measured")
    ours = methods["fed-grow"]["test_accuracy"]["party_std"]
    theirs = methods["independent"]["test_accuracy"]["party_std"]
    return _target(key, text, ours <= theirs, f"{ours:.4f} vs {theirs:.4f}",
                   f"{(ours - theirs) * 100:.2f} points more spread")


def _speed(methods: dict[str, dict[str, Any]]) -> dict[str, Any]:
    key = "steps-to-fed-scratch"
    text = (f"Fed-Grow reaches Fed-Scratch's final mean held-out accuracy within {SCRATCH_STEP_SHARE:.0%} of "
            "Fed-Scratch's local steps per party (curves averaged over seeds, one point every local_steps)")
    if "fed-grow" not in methods or "fed-scratch" not in methods:
        return _target(key, text, None, "not measured")
    scratch = methods["fed-scratch"]["curve"]
    goal, budget = scratch[-1]["accuracy"], scratch[-1]["steps"]
    steps = steps_to_reach(methods["fed-grow"]["curve"], goal)
    if steps is None:
        best = max(point["accuracy"] for point in methods["fed-grow"]["curve"])
        return _target(key, text, False,
                       f"not reached: Fed-Grow's best mean held-out accuracy {best:.4f} < Fed-Scratch's final {goal:.4f}",
                       f"{(goal - best) * 100:.2f} points of accuracy (never reached)")
    share = steps / budget
    return _target(key, text, share <= SCRATCH_STEP_SHARE,
                   f"reached {goal:.4f} after {steps} of Fed-Scratch's {budget} steps ({share:.0%})",
                   f"{share - SCRATCH_STEP_SHARE:.0%} of Fed-Scratch's steps")


def headline(methods: dict[str, dict[str, Any]]) -> dict[str, float]:
    """Fed-Grow's costs against Fed-Scratch's: the ratios the README quotes (accuracy: paired differences)."""
    if "fed-grow" not in methods or "fed-scratch" not in methods:
        return {}
    grow, scratch = methods["fed-grow"], methods["fed-scratch"]
    return {
        "bytes_total_vs_fed_scratch": grow["bytes_total"] / scratch["bytes_total"],
        "bytes_up_per_party_round_vs_fed_scratch": grow["bytes_up_per_party_round"] / scratch["bytes_up_per_party_round"],
        "phase1_trainable_parameters_vs_fed_scratch": (
            grow["trainable_parameters"]["phase1_mean"] / scratch["trainable_parameters"]["phase1_mean"]
        ),
        "shared_parameters_vs_fed_scratch": grow["shared_parameters"] / scratch["shared_parameters"],
    }


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


def comparisons_of(results: dict[str, Any], output_dir: Path) -> list[tuple[Path, dict[str, Any]]]:
    """Each comparison a ``results.json`` holds, with the folder its plots go to: itself, or one per partition
    (``output_dir/<partition>``)."""
    if results.get("kind") != PARTITIONED_KIND:
        return [(output_dir, results)]
    return [(output_dir / name, comparison) for name, comparison in results["partitions"].items()]


def write_results(output_dir: Path, results: dict[str, Any]) -> Path:
    output_dir.mkdir(parents=True, exist_ok=True)
    path = output_dir / RESULTS_FILE
    path.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    return path


def write_plots(output_dir: Path, results: dict[str, Any]) -> list[Path]:
    """Mean held-out accuracy across parties (averaged over seeds) against local steps per party and
    against cumulative bytes."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    paths = []
    for kind, filename in PLOTS.items():
        figure, axes = plt.subplots(figsize=(6.4, 4.2))
        for summary in results["methods"].values():
            curve = summary["curve"]
            xs = [p["steps"] if kind == "steps" else p["cumulative_bytes"] / 2**20 for p in curve]
            axes.plot(xs, [p["accuracy"] for p in curve], marker="o", markersize=6 if len(curve) <= 20 else 2.5,
                      label=summary["label"])
        axes.axhline(results["majority_class"]["held_out"]["mean"], color="gray", linestyle="--", linewidth=1,
                     label="majority class (reference)")
        if kind == "steps":
            axes.set_xlabel("local steps per party (one point per round / evaluation)")
        else:
            axes.set_xscale("symlog", linthresh=0.01)
            axes.set_xlabel("cumulative MiB sent, all parties, up + down (symlog; 0 = nothing sent)")
        axes.set_ylabel("mean held-out accuracy across parties")
        axes.set_title(f"{results['preset']}: accuracy vs {kind} (mean of {len(results['seeds'])} seeds)")
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


def _seeds_word(count: int) -> str:
    return "seed" if count == 1 else "seeds"


def _mean_std(figures: dict[str, Any], scale: float = 1.0, digits: int = 4) -> str:
    """``mean ± std`` of a mean/std pair (std None: one seed, no spread measured)."""
    std = "n/a" if figures["std"] is None else f"{figures['std'] * scale:.{digits}f}"
    return f"{figures['mean'] * scale:.{digits}f} ± {std}"


def _learning_rates(results: dict[str, Any]) -> str:
    config = FederationConfig.from_dict(results["config"])
    options, tuning, full_model = training_options(config), results["learning_rate_tuning"], finetune_learning_rate(config)
    own_rate = method_learning_rate(tuning, OWN_SOURCE) if tuning and OWN_SOURCE in results["methods"] else full_model
    own = f" (own-source {own_rate:g})" if own_rate != full_model else ""
    return (f"Learning rates: operator {options['learning_rate']:g}, full model {full_model:g}{own}; "
            f"batch size {options['per_device_train_batch_size']}.")


def _learning_rate_origin(results: dict[str, Any]) -> str:
    tuning = results["learning_rate_tuning"]
    if tuning is None:
        return f"Full-model learning rate: {results['learning_rate_origin']}."
    if "own_source" not in tuning:  # the earlier procedure: one rate, chosen by own-source, for every method
        return f"Full-model learning rate tuned (`--tune`, seed {tuning['seed']}): {_search(tuning)}"
    target = f"the target's {_search(tuning)}" if "chosen" in tuning else (
        "the target's not searched (no method that trains the target's shape was run);")
    own = (f"Own-source's {_search(tuning['own_source'])}" if tuning["own_source"] else
           "Own-source's not searched (own-source was not run).")
    return f"Full-model learning rates tuned (`--tune`, seed {tuning['seed']}): {target} {own}"


def _search(search: dict[str, Any]) -> str:
    """One learning-rate search: the choice, how it was made, every rate tried, and whether it is an edge."""
    tried = ", ".join(f"{float(rate):g}: {accuracy:.4f}" for rate, accuracy in search["dev_accuracy"].items())
    rates = sorted(float(rate) for rate in search["dev_accuracy"])
    edge = {rates[0]: "smallest", rates[-1]: "largest"}.get(search["chosen"]) if len(rates) > 1 else None
    caveat = (f" The chosen rate is the {edge} one tried, where the search ends: a better rate may lie beyond it."
              if edge else "")
    return (f"{search['chosen']:g} chosen by {search['procedure']}; mean development accuracy per rate "
            f"{tried}.{caveat}")


def _parties(results: dict[str, Any]) -> str:
    parties = "; ".join(
        f"party {index}: {party['train']} training examples (labels "
        f"{', '.join(f'{label}: {count}' for label, count in party['train_labels'].items())}), "
        f"{party['held_out']} held out"
        for index, party in enumerate(results["party_data"])
    )
    return (f"Data (data seed {results['config']['data_seed']}): {parties}; common test split "
            f"`{results['config']['data']['test_split']}`: {results['test_examples']} examples.")


def preset_section(results: dict[str, Any], results_dir: str) -> str:
    """The RESULTS.md section of one preset: common-test accuracy, paired differences, the issue's targets,
    costs, where Fed-Grow loses, plots, command."""
    methods, seeds = results["methods"], results["seeds"]
    lines = [
        f"## `{results['preset']}`",
        "",
        results["summary"],
        "",
        f"Command: `{results['command']}`  ",
        f"Measured {results['finished']} on {results['environment']['machine']}, git commit "
        f"`{results['environment']['git_commit']}`, total {results['wall_seconds'] / 60:.1f} min.  ",
        f"{_seeds_word(len(seeds)).capitalize()} {', '.join(map(str, seeds))}: each changes the initialisation "
        "(operators, task heads, Fed-Scratch's random target) and the order of training batches; the partition, "
        "the held-out shares and the parties' sources are fixed by the data seed.  ",
        _learning_rates(results) + "  ",
        _learning_rate_origin(results) + "  ",
        _parties(results),
        "",
        "### Accuracy on the common test split",
        "",
        "| Method | Test accuracy | Test macro-F1 | Spread across parties | Test accuracy per seed | "
        "Held-out accuracy | Held-out macro precision |",
        "|---|---|---|---|---|---|---|",
    ]
    for summary in methods.values():
        test = summary["test_accuracy"]
        lines.append(
            f"| {summary['label']} | {_mean_std(test)} | {_mean_std(summary['test_f1_macro'])} | "
            f"{test['party_std']:.4f} | {', '.join(f'{value:.4f}' for value in test['per_seed'])} | "
            f"{_mean_std(summary['accuracy'])} | {_mean_std(summary['precision_macro'])} |"
        )
    lines += [
        "",
        "Every party's final model (after phase 2; Fed-Scratch: after its last local FedAvg round) scored on the "
        f"common test split: mean across parties, then mean ± sample std over the {len(seeds)} "
        f"{_seeds_word(len(seeds))}. Spread across parties: std of the parties' test accuracies, mean over seeds. "
        "Held-out: each party's own held-out share "
        "(label-skewed like its training data), same statistics. Per-party and per-seed figures, every round's "
        f"records and the configs are in [`{results_dir}/results.json`]({results_dir}/results.json).",
        "",
    ]
    lines += _per_party_table(methods)
    lines += _paired_table(results["paired_differences"], methods)
    lines += _targets_section(results["targets"], results.get("notes", {}), _stale_notes_warning(results))
    lines += _cost_table(methods)
    figures = results["headline"]
    if figures:
        lines += [
            "Fed-Grow vs Fed-Scratch (measured): total bytes "
            f"{figures['bytes_total_vs_fed_scratch']:.2%} of Fed-Scratch's "
            f"({1 - figures['bytes_total_vs_fed_scratch']:.2%} less); one party's upload per round "
            f"{figures['bytes_up_per_party_round_vs_fed_scratch']:.2%}; phase-1 trainable parameters "
            f"{figures['phase1_trainable_parameters_vs_fed_scratch']:.2%}; shared parameters "
            f"{figures['shared_parameters_vs_fed_scratch']:.2%}.",
            "",
        ]
    majority = results["majority_class"]
    lines += [f"Majority-class reference (always predict the party's most frequent training label): held-out "
              f"accuracy {majority['held_out']['mean']:.4f} (per party "
              f"{', '.join(f'{a:.4f}' for a in majority['held_out']['per_party'])}), common-test accuracy "
              f"{majority['test']['mean']:.4f}. Under label skew the held-out figure is far above chance; a method "
              "near it learnt little beyond the label prior (in a binary task, a party whose macro precision is "
              "half its accuracy predicts one class only).", ""]
    lines += _losses(methods)
    lines += _phase2_effects(methods)
    # the preset's own methods (a results.json from before presets had their own lists: the LiGO regime's)
    skipped = [METHOD_LABELS[name] for name in results.get("preset_methods", METHODS) if name not in methods]
    if skipped:
        lines += [f"Not run for this preset (no figures): {', '.join(skipped)}; "
                  f"`fedgrow reproduce {results['preset']}` runs every method.", ""]
    notes = [f"{summary['label']}: {note}" for summary in methods.values() for note in summary["notes"]]
    lines += [f"Note: {note}" for note in notes] + ([""] if notes else [])
    lines += [f"![accuracy vs steps]({results_dir}/{PLOTS['steps']}) "
              f"![accuracy vs bytes]({results_dir}/{PLOTS['bytes']})", ""]
    return "\n".join(lines)


def partitioned_section(results: dict[str, Any], results_dir: str) -> str:
    """The RESULTS.md section of a comparison run under several partitions: the paper's claims beside the
    measurements, then each partition's own section."""
    lines = [f"## `{results['preset']}`", "", results["summary"], "", f"Command: `{results['command']}`", ""]
    if results.get("scaling"):
        lines += ["| setting | original | this preset |", "|---|---|---|"]
        lines += [f"| {name} | {original} | {ours} |" for name, (original, ours) in results["scaling"].items()]
        lines.append("")
    lines += ["### The paper's claims, measured", ""]
    for target in results["claims"]["targets"]:
        verdict = {True: "**met**", False: "**missed**", None: "not measured"}[target["met"]]
        lines.append(f"- {target['target']}: {verdict}; {target['measured']}.")
    lines.append("")
    for name, claims in results["claims"]["partitions"].items():
        lines += [f"#### Partition `{name}`: paired differences in points (mean ± std over seeds; seeds better)", "",
                  "| Comparison | Test accuracy | Test macro precision | Held-out accuracy | Held-out macro precision |",
                  "|---|---|---|---|---|"]
        for row, figures in claims["paired_points"].items():
            cells = [_paired_cell(figures[metric]) for metric in
                     ("test_accuracy", "test_precision_macro", "accuracy", "precision_macro")]
            lines.append(f"| {row} | " + " | ".join(cells) + " |")
        lines += ["", "| Method | Trainable parameters per party / Fed-Scratch's | Bytes / Fed-Scratch's |", "|---|---|---|"]
        for method, costs in claims["costs"].items():
            lines.append(f"| {method} | {_share_cell(costs['trainable_parameters_vs_fed_scratch'])} | "
                         f"{_share_cell(costs['bytes_vs_fed_scratch'])} |")
        lines += ["", "Seconds per local step per party, evaluations and overheads included (wall / CPU time): " + ", ".join(
            f"{method} {_seconds(clocks['wall'])} / {_seconds(clocks['cpu'])}"
            for method, clocks in claims["seconds_per_step_per_party"].items()), ""]
    for name, comparison in results["partitions"].items():
        section = preset_section(comparison, f"{results_dir}/{name}")
        lines.append(section.replace(f"## `{comparison['preset']}`", f"### `{comparison['preset']}`, partition `{name}`", 1)
                     .replace("\n### ", "\n#### "))
    return "\n".join(lines)


def _paired_cell(figures: dict[str, Any] | None) -> str:
    if figures is None:
        return "n/a"
    std = "n/a" if figures["std"] is None else f"{figures['std']:.2f}"
    return f"{figures['mean']:+.2f} ± {std} ({figures['better_on']} of {len(figures['per_seed'])})"


def _seconds(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2f}"


def _share_cell(share: float | None) -> str:
    return "n/a" if share is None else f"{share:.2%}"


def _per_party_table(methods: dict[str, dict[str, Any]]) -> list[str]:
    """Common-test accuracy party by party: where a method wins or loses on average, and which party
    (its source, its label skew in the data line above) carries the difference."""
    count = len(next(iter(methods.values()))["test_accuracy"]["per_party"])
    lines = ["### Common-test accuracy per party (mean over seeds)", "",
             "| Method | " + " | ".join(f"Party {index}" for index in range(count)) + " |",
             "|---|" + "---|" * count]
    for summary in methods.values():
        per_party = summary["test_accuracy"]["per_party"]
        lines.append(f"| {summary['label']} | " + " | ".join(f"{value:.4f}" for value in per_party) + " |")
    return [*lines, ""]


def _paired_table(differences: dict[str, dict[str, Any]], methods: dict[str, dict[str, Any]]) -> list[str]:
    if not differences:
        return []
    lines = ["### Fed-Grow minus each method, paired by seed (common-test accuracy, points)", "",
             "| Method | Mean ± std | Per seed | Seeds where Fed-Grow is better |", "|---|---|---|---|"]
    for name, difference in differences.items():
        lines.append(
            f"| {methods[name]['label']} | {_mean_std(difference, scale=100, digits=2)} | "
            f"{', '.join(f'{value * 100:+.2f}' for value in difference['per_seed'])} | "
            f"{difference['fed_grow_better']} of {len(difference['per_seed'])} |"
        )
    return [*lines, ""]


NOTES_PLACE = ("{kind} (written by a human, from `notes[\"{key}\"]` in results.json; rerun with `--report-only` "
               "after adding it)")


def _stale_notes_warning(results: dict[str, Any]) -> str:
    """A warning before notes written for an earlier measurement of the preset (empty: they are current)."""
    written_for = results.get("notes_written_for")
    if written_for is None or written_for == results["finished"]:
        return ""
    return (f"_(written for the measurement finished {written_for}, not for these figures: it may be out of "
            "date)_ ")


def _targets_section(targets: list[dict[str, Any]], notes: dict[str, str], stale: str = "") -> list[str]:
    """The issue's targets, met or missed (by how much), with the human-written reason of each miss, a
    human's comment on a met target where there is one (e.g. a margin within seed noise), and the notes
    on no target (``stale`` before notes written for an earlier measurement)."""
    lines = ["### Targets of the issue", ""]
    for target in targets:
        status = {True: "**met**", False: "**missed**", None: "not measured"}[target["met"]]
        measured = "" if target["met"] is None else f"; {target['measured']}"
        line = f"- {target['target']}: {status}{measured}"
        lines.append(line + (f"; missed by {target['missed_by']}." if target["met"] is False else "."))
        key = target["key"]
        if target["met"] is False:
            reason = stale + notes[key] if key in notes else "_not written yet_"
            lines.append(f"  - {NOTES_PLACE.format(kind='Reason', key=key)}: {reason}")
        elif key in notes:
            lines.append(f"  - {NOTES_PLACE.format(kind='Comment', key=key)}: {stale}{notes[key]}")
    target_keys = {target["key"] for target in targets}
    others = [key for key in notes if key not in target_keys]
    if others:
        lines += ["", *(f"{NOTES_PLACE.format(kind='Note', key=key)}: {stale}{notes[key]}" for key in others)]
    return [*lines, ""]


def _cost_table(methods: dict[str, dict[str, Any]]) -> list[str]:
    lines = ["### Cost", "",
             "| Method | Trainable params (phase 1, mean/party) | Shared params | Upload/party/round | "
             "Bytes/round (all) | Bytes total | Local steps/party | Wall time (all seeds) |",
             "|---|---|---|---|---|---|---|---|"]
    for summary in methods.values():
        lines.append(
            f"| {summary['label']} | {_human_count(summary['trainable_parameters']['phase1_mean'])} | "
            f"{_human_count(summary['shared_parameters']) if summary['shared_parameters'] else '0'} | "
            f"{_human_bytes(summary['bytes_up_per_party_round'])} | {_human_bytes(summary['bytes_per_round'])} | "
            f"{_human_bytes(summary['bytes_total'])} | {summary['local_steps_per_party']} | "
            f"{summary['wall_seconds']:.0f} s |"
        )
    return [*lines, ""]


def _losses(methods: dict[str, dict[str, Any]]) -> list[str]:
    """Every method that beats Fed-Grow's mean on any reported metric, named."""
    if "fed-grow" not in methods:
        return []
    lines = []
    for metric, label in (("test_accuracy", "common-test accuracy"), ("test_f1_macro", "common-test macro-F1"),
                          ("accuracy", "held-out accuracy"), ("precision_macro", "held-out macro precision")):
        ours = methods["fed-grow"][metric]["mean"]
        better = [f"{other['label']} ({other[metric]['mean']:.4f})" for name, other in methods.items()
                  if name != "fed-grow" and other[metric]["mean"] > ours]
        if better:
            lines.append(f"Where Fed-Grow loses: its mean {label} ({ours:.4f}) is below {', '.join(better)}.")
    return [*lines, ""] if lines else []


def _phase2_effects(methods: dict[str, dict[str, Any]]) -> list[str]:
    """How phase 2 (fine-tuning the merged model) moved each growing method's mean held-out accuracy."""
    effects = [
        f"{summary['label']} {phase1[-1]['accuracy']:.4f} -> {curve[-1]['accuracy']:.4f}"
        for summary in methods.values()
        if (curve := summary["curve"])[-1]["phase"] == "finetune-local"
        and (phase1 := [point for point in curve if point["phase"] != "finetune-local"])
    ]
    if not effects:
        return []
    return [f"Phase 2 (mean held-out accuracy after the last phase-1 round -> after phase 2): {'; '.join(effects)}.",
            ""]


REPORT_HEADER = """# Fed-Grow vs baselines: measured results

Generated by `fedgrow reproduce` from `benchmarks/results/<preset>/results.json`; do not edit by hand (the
reasons for missed targets come from each results.json's optional `notes`).

Two regimes are measured. **LiGO's** (`text-small`, `vision-small`, `gpu-small`, `paper`): a short federated
operator phase (a tenth of the steps), then every party merges its grown model and fine-tunes it alone
(`phase2 = "local"`): the federation acts on the operator phase only, and what a party gets is mostly its own
fine-tuning. **The Fed-Grow paper's** (`paper-agnews`): the operator alone is trained for many federated
rounds, the grown model is evaluated as the operator generates it and merged once at the end
(`phase2 = "merge"`); every step a party takes then trains the shared Global-LiGO. Pick LiGO's regime to
get the best model a party can train on its own data (the grown model's weights all adapt to it); pick the
operator-only regime when a party cannot afford to train the large model at all (it trains only the
operator, a few percent of the target's parameters with the default head-Kronecker factors) or when the
federation should shape the whole training.

Figures measured before 2026-12-05 carry a defect of the federated rounds, fixed since: every round's
`Trainer` re-seeded its data sampler, so each round of a party drew the same first batches of its share
(Fed-Grow's operator phase and every round of Fed-Scratch trained on the first `local_steps` x batch size
examples of each party, over and over). Rounds now continue one seeded stream of epoch permutations
(`experiment/stream.py`, `StreamSampler`), the very batches one uninterrupted training sees, and the
non-federated methods draw from the same stream. The LiGO-regime sections below are from before the fix:
their Fed-Scratch figures (its whole training) and Fed-Grow's operator phase are affected until re-measured.

Methods (same parties, sources, data partition, seeds, learning rates, batch size and local steps per party
for all; no hyper-parameter was tuned per method). Learning rates are set by what is trained, not by method:
the operator's (phase 1 of the growth methods) and the full model's (phase 2 of the growth methods, all of
Fed-Scratch and of own-source fine-tuning). With `--tune` the full model's is chosen per shape of model on
development splits: the target's by independent growth, the sources' (own-source fine-tuning only, the
user's alternative at its own best rate) by own-source fine-tuning. Each preset section lists the rates and
where they come from.

- **Fed-Grow**: Dual-LiGO; only the Global-LiGO is averaged (Flower FedAvg, example-weighted) for R rounds,
  then every party merges its grown model and fine-tunes it alone (phase 2).
- **Fed-Scratch**: FedAvg of the full target model from one seeded random initialisation, for as many local
  steps per party as Fed-Grow's two phases together.
- **Independent growth**: every party grows its own source with plain LiGO, alone, for the same steps, then
  the same phase 2; nothing is sent.
- **FedAvg of whole operator (same source)**: every party holds the same source (the preset's largest one),
  the Local-LiGO is the frozen identity, so the whole trainable operator is averaged: an upper reference that
  assumes a shared source.
- **Own source, fine-tuned**: every party fine-tunes its own source under a fresh classification head, alone,
  for Fed-Grow's phase-1 + phase-2 steps per party at the full-model learning rate (with `--tune`, the one
  chosen for the sources): what a party would do instead of growing.
- **Central LiGO on pooled data**: one plain-LiGO growth of the largest source trained on all parties' training
  data pooled, for (number of parties) x the steps of each phase, so every example is seen as often as in the
  federated methods: an upper reference that needs the raw data in one place.

In the operator-only regime (`paper-agnews`) there is no fine-tuning phase, and: **independent growth** is a
Fed-Grow party's own Dual-LiGO model trained alone (the authors' `noagg`), so the averaging is the only
difference; **dense** variants use full width matrices (the paper's operator) instead of head-structured
Kronecker factors; **Local-LiGO fixed after round 1** is the authors' schedule; **sharing the intermediate
model** is what the authors' code does: after round 1 each party sends its grown intermediate model once and
every party then grows from their average (a model is shared, unlike strict Fed-Grow, where only the
Global-LiGO ever leaves a party).

Main figure: every party's final model scored on the dataset's common test split (SST-2: `test.tsv`, GLUE's
labelled dev split; MNIST: the last 2,000 of the 10,000 t10k images, the first 8,000 being the training pool),
mean across parties, then mean ± sample std over seeds; paired differences compare Fed-Grow with each method
seed by seed. Each party is also evaluated on its own held-out share of its data (20%; under the Dirichlet
split the label skew included). Macro precision averages over every class present in a party's held-out labels
or predictions, a class never predicted counting 0 (scikit-learn's definition): under strong label skew it is
far below accuracy. In phase-1 rounds a party's accuracy is that of its LiGO model (the same function as
its merged grown model). Bytes are the serialised arrays the federation moved (Flower `ArrayRecord` payloads,
up + down). Wall times are indicative only; they include Ray start-up for the federated methods, which run
parties in parallel, while the other methods train their parties one after another in one process.
"""


def write_report(results_root: Path, report_path: Path, pending: dict[str, str] | None = None) -> Path:
    """Regenerate ``RESULTS.md`` from every comparison's ``<results_root>/<preset>/results.json`` (other
    benchmarks keep their own ``results.json`` there too: only those of kind ``RESULTS_KIND`` count).

    ``pending`` maps presets without results to how to produce them (Markdown).
    """
    sections, done = [REPORT_HEADER], set()
    for path in sorted(results_root.glob(f"*/{RESULTS_FILE}")):
        results = json.loads(path.read_text(encoding="utf-8"))
        if results.get("kind") == RESULTS_KIND:
            sections.append(preset_section(results, _relative(path.parent, report_path.parent)))
            done.add(path.parent.name)
        elif results.get("kind") == PARTITIONED_KIND:
            sections.append(partitioned_section(results, _relative(path.parent, report_path.parent)))
            done.add(path.parent.name)
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
