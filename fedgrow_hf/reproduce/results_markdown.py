"""``RESULTS.md``, regenerated from every comparison's ``results.json`` alone, so it never drifts from them:
a section per preset (or per partition of one), under the header ``results_header.md``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ..experiment.config import FederationConfig
from ..experiment.training import finetune_learning_rate, training_options
from .methods import METHOD_LABELS, METHODS, OWN_SOURCE
from .plots import PLOTS
from .results import PARTITIONED_KIND, RESULTS_FILE, RESULTS_KIND
from .stats import aggregation_effect
from .targets import NOT_MEASURED
from .tuning import method_learning_rate

REPORT_HEADER = Path(__file__).with_name("results_header.md")
# a partitioned results.json's notes on one partition's targets are keyed "<partition>/<target key>"; the others
# are on the claims' targets (claims.TARGET_KEYS) or on none
PARTITION_NOTE = "/"
NOTES_PLACE = ("{kind} (written by a human, from `notes[\"{key}\"]` in results.json; rerun with `--report-only` "
               "after adding it)")


def write_report(results_root: Path, report_path: Path, pending: dict[str, str] | None = None) -> Path:
    """Regenerate ``RESULTS.md`` from every comparison's ``<results_root>/<preset>/results.json`` (other
    benchmarks keep their own ``results.json`` there too: only those of kind ``RESULTS_KIND`` count).

    ``pending`` maps presets without results to how to produce them (Markdown).
    """
    sections, done = [REPORT_HEADER.read_text(encoding="utf-8")], set()
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


def preset_section(results: dict[str, Any], results_dir: str, notes: dict[str, str] | None = None,
                   stale: str | None = None) -> str:
    """The RESULTS.md section of one preset: common-test accuracy, paired differences, the issue's targets,
    costs, where Fed-Grow loses, plots, command. ``notes`` and ``stale`` (default: the results' own) are the
    hand-written notes on its targets and the warning before them."""
    methods, seeds = results["methods"], results["seeds"]
    lines = [
        f"## `{results['preset']}`",
        "",
        results["summary"],
        "",
        f"Command: `{results['command']}`  ",
        f"Measured {results['finished']} on {results['environment']['machine']}, git commit "
        f"`{results['environment']['git_commit']}`, total {results['wall_seconds'] / 60:.1f} min"
        f"{_compute(results.get('compute'))}.  ",
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
    lines += _aggregation_table(methods)
    lines += _targets_section(results["targets"], results.get("notes", {}) if notes is None else notes,
                              _stale_notes_warning(results) if stale is None else stale)
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
    computes = {name: comparison["compute"] for name, comparison in results["partitions"].items()
                if "compute" in comparison}
    if computes:
        lines += ["What these figures cost, each partition's runs and searches summed over every sitting that measured "
                  "them: " + "; ".join(f"`{name}` {_hours(compute['cpu'])} CPU ({_hours(compute['wall'])} wall"
                                       f"{_untimed(compute)})" for name, compute in computes.items())
                  + f". Run as one process per partition side by side, the preset takes the longest partition's wall "
                  f"time: {_hours(max(compute['wall'] for compute in computes.values()))}.", ""]
    notes, stale = results.get("notes", {}), _stale_notes_warning(results)
    claim_notes = {key: note for key, note in notes.items() if PARTITION_NOTE not in key}
    lines += _targets_section(results["claims"]["targets"], claim_notes, stale, "### The paper's claims, measured")
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
            for method, clocks in claims["seconds_per_step_per_party"].items()) + ". One party's training step "
            "alone, with its peak memory, each method beside Fed-Scratch: `benchmarks/bench_party_step.py` "
            "(benchmarks/README).", ""]
    for name, comparison in results["partitions"].items():
        own = {key.removeprefix(f"{name}{PARTITION_NOTE}"): note for key, note in notes.items()
               if key.startswith(f"{name}{PARTITION_NOTE}")}
        section = preset_section(comparison, f"{results_dir}/{name}", own, stale)
        lines.append(section.replace(f"## `{comparison['preset']}`", f"### `{comparison['preset']}`, partition `{name}`", 1)
                     .replace("\n### ", "\n#### "))
    return "\n".join(lines)


def _compute(compute: dict[str, Any] | None) -> str:
    """The compute behind a comparison's figures, beside the last sitting's total (which a resumed comparison that
    keeps every run makes short)."""
    if compute is None:
        return ""
    return (f" in this sitting; its runs and searches took {_hours(compute['cpu'])} CPU "
            f"({_hours(compute['wall'])} wall) in all, over every sitting that measured them{_untimed(compute)}")


def _hours(seconds: float) -> str:
    return f"{seconds / 3600:.2f} h"


def _untimed(compute: dict[str, Any]) -> str:
    untimed = compute["untimed"]
    return f"; {untimed} run(s) or search score(s) recorded without their time are left out" if untimed else ""


def _aggregation_table(methods: dict[str, dict[str, Any]]) -> list[str]:
    """What each federation's average changes in a party, beside what its own steps change
    (:func:`.stats.aggregation_effect`, mean over seeds): the coupling between parties that a federated result
    can owe to the federation. Empty when no method measured it."""
    effects = {summary["label"]: effect for summary in methods.values()
               if (effect := aggregation_effect(summary)) is not None}
    if not effects:
        return []
    lines = ["### What the server's average changes in a party", "",
             "Mean |change| of a party's held-out loss at each aggregation (the start of round r against the end of "
             "round r - 1) and over its own local steps in a round (end against start), rounds 2 on, over parties "
             "and seeds. A federation passes knowledge between parties only through the first.", "",
             "| Method | By the average | By local training | Average / local |", "|---|---|---|---|"]
    for label, effect in effects.items():
        local = effect["by_local_training"]
        ratio = f"{effect['by_average'] / local:.2f}" if local else "n/a"
        lines.append(f"| {label} | {effect['by_average']:.4f} | {local:.4f} | {ratio} |")
    return [*lines, ""]


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
    operator = f" The operator's learning rate: {_search(tuning['operator'])}" if tuning.get("operator") else ""
    return f"Full-model learning rates tuned (`--tune`, seed {tuning['seed']}): {target} {own}{operator}"


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


def _better_on(difference: dict[str, Any]) -> int:
    """On how many seeds Fed-Grow is ahead (a ``results.json`` written before the paired statistics were shared
    with the claims names it ``fed_grow_better``)."""
    return difference["better_on"] if "better_on" in difference else difference["fed_grow_better"]


def _paired_table(differences: dict[str, dict[str, Any]], methods: dict[str, dict[str, Any]]) -> list[str]:
    if not differences:
        return []
    lines = ["### Fed-Grow minus each method, paired by seed (common-test accuracy, points)", "",
             "| Method | Mean ± std | Per seed | Seeds where Fed-Grow is better |", "|---|---|---|---|"]
    for name, difference in differences.items():
        lines.append(
            f"| {methods[name]['label']} | {_mean_std(difference, scale=100, digits=2)} | "
            f"{', '.join(f'{value * 100:+.2f}' for value in difference['per_seed'])} | "
            f"{_better_on(difference)} of {len(difference['per_seed'])} |"
        )
    return [*lines, ""]


def _stale_notes_warning(results: dict[str, Any]) -> str:
    """A warning before notes written for an earlier measurement of the preset (empty: they are current)."""
    written_for = results.get("notes_written_for")
    if written_for is None or written_for == results["finished"]:
        return ""
    return (f"_(written for the measurement finished {written_for}, not for these figures: it may be out of "
            "date)_ ")


def _targets_section(targets: list[dict[str, Any]], notes: dict[str, str], stale: str = "",
                     title: str = "### Targets of the issue") -> list[str]:
    """The issue's targets, met or missed (by how much), with the human-written reason of each miss, a
    human's comment on a met target where there is one (e.g. a margin within seed noise), and the notes
    on no target (``stale`` before notes written for an earlier measurement)."""
    lines = [title, ""]
    for target in targets:
        status = {True: "**met**", False: "**missed**", None: NOT_MEASURED}[target["met"]]
        # an unmeasured target says what it needs, or (older results) only that it was not measured
        measured = "" if target["measured"] in ("", NOT_MEASURED) else f"; {target['measured']}"
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


def _relative(path: Path, start: Path) -> str:
    """``path`` as a link from a file in ``start`` (absolute when it is not below ``start``)."""
    try:
        return path.resolve().relative_to(start.resolve()).as_posix()
    except ValueError:
        return path.resolve().as_posix()
