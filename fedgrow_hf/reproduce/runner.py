"""Run a whole comparison: every method on one preset (or a user's federation config) with every seed,
then write it up."""

from __future__ import annotations

import copy
import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from functools import partial
from pathlib import Path
from typing import Any

import datasets

from ..experiment.config import COMPARISON_TABLE, FederationConfig, read_config_file
from ..experiment.data import common_test_set
from ..federated.engine import SimulationEngine, as_engine
from .claims import paper_claims
from .environment import environment
from .kept import keep, kept_or_run, kept_summary
from .methods import majority_class_reference, party_data, run_method
from .plots import write_plots
from .presets import COMPARISON_SEEDS, PRESET_FOLDER, PRESETS, ComparisonSettings, preset_config
from .results import PARTITIONED_KIND, RESULTS_FILE, RESULTS_KIND, comparisons_of, write_results
from .results_markdown import write_report
from .side_by_side import check_jobs, run_side_by_side, threads_per_job
from .stats import compute_seconds, headline, paired_differences, seed_summary, summarise
from .targets import issue_targets
from .tuning import at_tuned_rates, keep_party_scores, procedure, run_search, searches_for, tuning_record


@dataclass
class Comparison:
    """What a comparison starts from: the config and its ``[reproduce]`` settings (its summary, seeds and methods,
    where its full-model learning rate comes from, the data settings of each partition it is run under)."""

    config: FederationConfig
    settings: ComparisonSettings


def load_comparison(preset: str, data_dir: str | Path) -> Comparison:
    """A preset (its data under ``data_dir``) or a federation config file, whose paths are its folder's and whose
    ``[reproduce]`` table is optional (seeds: its own seed and the next two; its data seed stays fixed)."""
    comparison = _load_comparison(preset, data_dir)
    if not comparison.config.family.classifies:
        raise ValueError(f"{preset!r} grows {comparison.config.model.family} language models: fedgrow reproduce compares "
                         "classifiers (test accuracy on labelled data); run a decoder federation with fedgrow simulate")
    return comparison


def _load_comparison(preset: str, data_dir: str | Path) -> Comparison:
    path = Path(preset)
    if preset not in PRESETS and path.is_file() and path.resolve().parent == PRESET_FOLDER.resolve():
        preset = path.stem  # a preset's file: its data folder is data_dir's, not the file's
    if preset in PRESETS:
        return Comparison(FederationConfig.from_dict(preset_config(preset, data_dir)), PRESETS[preset].settings)
    if path.is_file():
        config = FederationConfig.load(path)
        defaults = {"summary": f"federation config `{preset}` ({config.num_parties} parties)",
                    "seeds": tuple(config.seed + offset for offset in range(len(COMPARISON_SEEDS))),
                    "learning_rate_origin": "as set in the config file"}
        table = read_config_file(path).get(COMPARISON_TABLE, {})
        return Comparison(config, ComparisonSettings.from_table(table, preset, defaults))
    raise ValueError(f"{preset!r} is neither a preset ({', '.join(PRESETS)}) nor a federation config file")


def reproduce(
    preset: str | Comparison,
    *,
    data_dir: str | Path,
    output_dir: str | Path,
    work_dir: str | Path,
    report_path: str | Path | None = None,
    methods: Sequence[str] | None = None,
    seeds: Sequence[int] | None = None,
    tune: bool = False,
    keep_models: bool = False,
    command: str = "",
    engine: str | SimulationEngine = "ray",
    resume: bool = False,
    partitions: Sequence[str] | None = None,
    jobs: int = 1,
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Run ``methods`` (default: the preset's) on ``preset`` (a name or a config file, :func:`load_comparison`, or
    what it loaded) with every seed (default: the preset's); write ``results.json`` and plots to ``output_dir`` and
    regenerate ``report_path`` (default: ``RESULTS.md`` beside the folder holding ``output_dir``). A preset with partitions (``paper-agnews``) runs the whole
    comparison under each, in ``work_dir/<partition>``, into one ``results.json`` (``partitions``).

    Each seed sets the config's ``seed`` (initialisation, batch order); its ``data_seed`` (partition,
    held-out shares, sources) stays fixed. With ``tune``, the full-model learning rates are first chosen on
    development splits (:mod:`.tuning`): the target's, used by every method that trains the target's shape,
    and the sources', used by own-source fine-tuning; a rate no method in ``methods`` trains at is not
    searched. Run folders (the federation's ``metrics.jsonl``, party folders, cached sources; with
    ``keep_models`` also every party's final model) go to ``work_dir/seed-<seed>/``, so ``output_dir``
    holds only the figures. Each finished run's summary is kept in ``work_dir/seed-<seed>/<method>.json``
    (a search's in ``work_dir/tuning-<search>.json``); with ``resume``, a run whose kept summary was
    measured with the same config is not repeated (so a long comparison that stopped half-way continues).

    ``partitions`` runs only those of a partitioned preset's comparisons: two processes given one partition
    each share the cores (each its own runs, no run folder in common) and write nothing but the kept runs;
    a run of every partition with ``resume`` then writes ``results.json`` and the report from them.

    ``jobs`` > 1 runs that many of a comparison's runs at once, each in a worker process on its share of the
    threads (:mod:`.side_by_side`; the in-process engine only); a worker's round-by-round lines go to standard
    output, not to ``log``. The learning-rate searches run first, in this process.
    """
    check_jobs(jobs, engine)
    comparison = preset if isinstance(preset, Comparison) else load_comparison(preset, data_dir)
    seeds, methods = list(seeds or comparison.settings.seeds), list(methods or comparison.settings.methods)
    work_dir, output_dir = Path(work_dir).resolve(), Path(output_dir)
    compare = partial(_compare, comparison, methods=methods, seeds=seeds, tune=tune, keep_models=keep_models,
                      command=command, engine=engine, resume=resume, jobs=jobs, log=log)
    every = comparison.settings.partitions
    selected = selected_partitions(every, partitions)
    if every is None:
        results = compare(comparison.config, work_dir)
        results.update(_kept_notes(output_dir / RESULTS_FILE))
    else:
        started = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
        by_partition = {}
        for name, data in selected.items():
            config = copy.deepcopy(comparison.config)
            for key, value in data.items():
                setattr(config.data, key, value)
            config.validate()
            # prefixed: the preset's two processes (one per partition) write one log, their runs named alike
            by_partition[name] = compare(config, work_dir / name, log=partial(_log_partition, log, name))
        if selected.keys() != every.keys():
            log(f"{comparison.config.name}: ran {', '.join(selected)} only; results.json and the report come from a "
                "run of every partition with --resume (which keeps these runs)")
            return {"kind": PARTITIONED_KIND, "preset": comparison.config.name, "partitions": by_partition}
        results = {"kind": PARTITIONED_KIND, "preset": comparison.config.name, "summary": comparison.settings.summary,
                   "command": command, "started": started,
                   "finished": max(partition["finished"] for partition in by_partition.values()),
                   "scaling": comparison.settings.scaling,
                   "partitions": by_partition,
                   "claims": paper_claims(by_partition), **_kept_notes(output_dir / RESULTS_FILE)}
    write_results(output_dir, results)
    report = rewrite_report(output_dir, report_path)
    log(f"wrote {output_dir / RESULTS_FILE}, plots and {report}")
    return results


def selected_partitions(every: dict[str, dict[str, Any]] | None, names: Sequence[str] | None) -> dict[str, Any]:
    """The comparisons of ``every`` (a preset's partitions) named in ``names`` (all when None), in the preset's
    order; a name the preset lacks, or names for a preset without partitions, are refused before anything runs."""
    if names is None:
        return every or {}
    if every is None:
        raise ValueError("this preset has no partitions: run it without --partitions")
    unknown = sorted(set(names) - set(every))
    if unknown:
        raise ValueError(f"unknown partitions {unknown}: this preset has {', '.join(every)}")
    return {name: data for name, data in every.items() if name in names}


def _compare(
    comparison: Comparison, config: FederationConfig, work_dir: Path, *, methods: Sequence[str], seeds: Sequence[int],
    tune: bool, keep_models: bool, command: str, engine: str | SimulationEngine, resume: bool, jobs: int,
    log: Callable[[str], None],
) -> dict[str, Any]:
    """One comparison: every method with every seed on ``config`` (runs kept in ``work_dir``); its results."""
    config = copy.deepcopy(config)
    config.data.source_cache = str(work_dir / "sources")
    work_dir.mkdir(parents=True, exist_ok=True)
    started, wall = datetime.now(timezone.utc), time.monotonic()
    tuning = _tune(config, methods, seeds[0], work_dir, resume, log) if tune else None
    if tuning:
        config = at_tuned_rates(config, tuning)
    test_set = common_test_set(config)
    runs = {
        (method, seed): _seeded(at_tuned_rates(config, tuning, method) if tuning else config, seed)
        for method in methods for seed in seeds
    }
    measure = partial(_measure, work_dir=work_dir, test_set=test_set, keep_models=keep_models, engine=as_engine(engine),
                      resume=resume)
    summaries = _measure_all(runs, measure, work_dir, resume, jobs, log)
    measured = {}
    for method in methods:
        measured[method] = summarise(method, [summaries[method, seed] for seed in seeds])
        log(f"{config.name}/{method}: common-test accuracy {measured[method]['test_accuracy']['mean']:.4f} "
            f"(seeds {', '.join(map(str, seeds))})")
    results = {
        "kind": RESULTS_KIND,
        "preset": config.name,
        "summary": comparison.settings.summary,
        "command": command,
        "started": started.strftime("%Y-%m-%d %H:%M UTC"),
        "finished": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "wall_seconds": round(time.monotonic() - wall, 1),
        "compute": compute_seconds(measured, tuning),
        "config": config.to_dict(),
        "seeds": seeds,
        "learning_rate_origin": comparison.settings.learning_rate_origin,
        "learning_rate_tuning": tuning,
        "environment": environment(),
        "party_data": party_data(config),
        "test_examples": len(test_set),
        "majority_class": majority_class_reference(config, list(test_set.with_format(None)["labels"])),
        "preset_methods": list(comparison.settings.methods),
        "methods": measured,
        "paired_differences": paired_differences(measured),
        "targets": issue_targets(measured),
        "headline": headline(measured),
    }
    return results


def _measure_all(
    runs: dict[tuple[str, int], FederationConfig], measure: Callable[..., dict[str, Any]], work_dir: Path, resume: bool,
    jobs: int, log: Callable[[str], None],
) -> dict[tuple[str, int], dict[str, Any]]:
    """The summary of every run (``(method, seed)``: its seeded config): kept from an earlier run with ``resume``,
    else measured by ``measure`` (:func:`_measure`), one after another or ``jobs`` at once, and kept in
    ``work_dir/seed-<seed>/<method>.json`` as each finishes."""
    kept = {key: work_dir / f"seed-{key[1]}" / f"{key[0]}.json" for key in runs}
    what = {key: f"{key[0]}/seed {key[1]}" for key in runs}
    if jobs == 1:
        return {key: kept_or_run(kept[key], seeded, resume, log, what[key], partial(measure, method=key[0], log=log))
                for key, seeded in runs.items()}
    summaries = {key: summary for key, seeded in runs.items()
                 if (summary := kept_summary(kept[key], seeded, resume, log, what[key])) is not None}
    pending = [key for key in runs if key not in summaries]
    if pending:
        log(f"{runs[pending[0]].name}: running {len(pending)} runs, {jobs} at a time on {threads_per_job(jobs)} "
            "thread(s) each")

    def done(key: tuple[str, int], summary: dict[str, Any]) -> None:
        summaries[key] = keep(kept[key], runs[key], summary)
        log(f"{runs[key].name}/{what[key]}: finished ({len(summaries)} of {len(runs)})")

    run_side_by_side({key: partial(measure, runs[key], method=key[0], log=print) for key in pending}, jobs, done)
    return summaries


def _log_partition(log: Callable[[str], None], partition: str, line: str) -> None:
    log(f"{partition}: {line}")


def _tune(config: FederationConfig, methods: Sequence[str], seed: int, work_dir: Path, resume: bool,
          log: Callable[[str], None]) -> dict[str, Any]:
    """The learning-rate searches ``methods`` need (each kept in ``work_dir/tuning-<search>.json``, so that a
    resumed run with other methods reuses what was searched, and every party's score at a rate in
    ``work_dir/tuning``, so that a resumed search reruns only what it has not measured), as ``results.json``
    records them."""
    seeded, searches = _seeded(config, seed), {}
    for name in searches_for(methods, config):
        kept = work_dir / f"tuning-{name}.json"
        if resume and kept.is_file() and (scores := keep_party_scores(json.loads(kept.read_text(encoding="utf-8")),
                                                                      seeded, name, work_dir / "tuning")):
            log(f"{config.name}/learning-rate tuning ({name}): {scores} party scores at a rate kept from {kept}")
        current = procedure(name, config)
        searches[name] = kept_or_run(kept, seeded, resume, log, f"learning-rate tuning ({name})",
                                     partial(run_search, name=name, work_dir=work_dir / "tuning", log=log,
                                             resume=resume),
                                     still_valid=lambda summary, current=current: summary.get("procedure") == current)
    return tuning_record(searches, seed)


def _kept_notes(previous: Path) -> dict[str, Any]:
    """The hand-written ``notes`` of the ``results.json`` a rerun replaces, so that no reason is lost, with
    ``notes_written_for``: the measurement they were written for (the report marks them as possibly out
    of date until a human rewrites them and sets it to the new ``finished``)."""
    if not previous.is_file():
        return {}
    old = json.loads(previous.read_text(encoding="utf-8"))
    if not old.get("notes"):
        return {}
    return {"notes": old["notes"], "notes_written_for": old.get("notes_written_for", old["finished"])}


def _measure(
    seeded: FederationConfig, *, method: str, work_dir: Path, test_set: datasets.Dataset, keep_models: bool,
    engine: SimulationEngine, resume: bool, log: Callable[[str], None],
) -> dict[str, Any]:
    """Run ``method`` with ``seeded.seed`` in ``work_dir/seed-<seed>`` (with ``resume``, continuing the
    federation a killed run left there) and summarise it, logging every round."""
    def on_round(report: dict[str, Any]) -> None:
        figure = f"mean accuracy {report['accuracy']:.4f}" if "accuracy" in report else "no figures (an exchange)"
        log(f"{seeded.name}/{method}/seed {seeded.seed}: {report['phase']} round {report['round']}: {figure}")

    run = run_method(seeded, method, work_dir / f"seed-{seeded.seed}", test_set, keep_models=keep_models,
                     engine=engine, on_round=on_round, resume=resume)
    return seed_summary(run)


def _seeded(config: FederationConfig, seed: int) -> FederationConfig:
    """``config`` with ``seed`` for initialisation and batch order; the data seed is unchanged."""
    seeded = copy.deepcopy(config)
    seeded.seed = seed
    return seeded


def rewrite_report(output_dir: str | Path, report_path: str | Path | None = None) -> Path:
    """Redraw ``output_dir``'s plots from its ``results.json`` and regenerate ``RESULTS.md``
    (default: beside the folder holding ``output_dir``) from every preset's results; nothing is rerun,
    so ``notes`` added to a ``results.json`` by hand appear in the report."""
    output_dir = Path(output_dir)
    results_file = output_dir / RESULTS_FILE
    if not results_file.is_file():
        raise FileNotFoundError(f"{results_file} does not exist: run the comparison first")
    results = json.loads(results_file.read_text(encoding="utf-8"))
    for folder, comparison in comparisons_of(results, output_dir):
        folder.mkdir(parents=True, exist_ok=True)
        write_plots(folder, comparison)
    report = Path(report_path) if report_path else output_dir.resolve().parent.parent / "RESULTS.md"
    return write_report(output_dir.resolve().parent, report, pending=pending_commands())


def pending_commands() -> dict[str, str]:
    """How to measure each preset (listed in RESULTS.md while a preset has no results)."""
    return {
        name: f"`fedgrow reproduce {name}` from the repository root (expected: {preset.settings.budget})"
        for name, preset in PRESETS.items() if name != "tiny"
    }
