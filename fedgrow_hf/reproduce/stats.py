"""From measured runs to figures: one method's run with one seed summarised, statistics over seeds and
parties, and paired differences between methods.

Nothing here estimates a figure: every number comes from a method's records (the federation's
``metrics.jsonl`` lines, or the in-process runs' evaluations), from scoring the final models on the common
test split, or from counting parameters.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .methods import METHOD_LABELS, MethodRun

SEED_METRICS = ("test_accuracy", "test_f1_macro", "test_precision_macro", "accuracy", "precision_macro")  # per party, for every seed
COST_FIELDS = ("trainable_parameters", "shared_parameters", "bytes_up_per_party_round", "bytes_per_round",
               "communication_rounds", "bytes_total", "local_steps_per_party", "notes")  # the same for every seed


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


def paired(ours: list[float], theirs: list[float], scale: float = 1.0) -> dict[str, Any]:
    """``ours`` minus ``theirs`` seed by seed (the same seeds, in the same order), times ``scale``: the mean, the
    sample std (None for one seed), every seed's difference and on how many seeds ``ours`` is ahead."""
    per_seed = [scale * (a - b) for a, b in zip(ours, theirs, strict=True)]
    return {
        "mean": float(np.mean(per_seed)),
        "std": float(np.std(per_seed, ddof=1)) if len(per_seed) > 1 else None,
        "per_seed": per_seed,
        "better_on": sum(value > 0 for value in per_seed),
    }


def aggregation_effect(summary: dict[str, Any]) -> dict[str, Any] | None:
    """How far the server's average moves a party, beside how far the party's own training moves it: per seed,
    the mean over parties and rounds 2..R of |held-out loss at the start of round r (the average just received)
    minus at the end of round r - 1 (its own update)|, and of |end minus start of round r|.

    Why it is reported: a federation can only pass knowledge between parties through what the average
    changes in each. When it moves a party's loss a small fraction of what the party's own steps do, the
    party's model is in effect trained alone, and federated and independent growth tie whatever the data.
    None for a method without both measurements (no federation, or runs without a start-of-round evaluation).
    """
    per_seed = []
    for run in summary["runs"]:
        rounds = [record for record in run["records"] if record["parties"]
                  and all("eval_loss_before" in party for party in record["parties"].values())]
        moved, trained = [], []
        for previous, current in zip(rounds, rounds[1:]):
            if previous["phase"] != current["phase"]:
                continue
            for party, figures in current["parties"].items():
                if party in previous["parties"]:
                    moved.append(abs(figures["eval_loss_before"] - previous["parties"][party]["eval_loss"]))
                    trained.append(abs(figures["eval_loss"] - figures["eval_loss_before"]))
        if moved:
            per_seed.append({"by_average": float(np.mean(moved)), "by_local_training": float(np.mean(trained))})
    if not per_seed:
        return None
    return {key: float(np.mean([seed[key] for seed in per_seed])) for key in ("by_average", "by_local_training")} | {
        "per_seed": per_seed}


def paired_differences(methods: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Fed-Grow minus every other method in mean common-test accuracy across parties, seed by seed (every
    method runs with the same seeds, so seed s of one pairs with seed s of the other)."""
    if "fed-grow" not in methods:
        return {}
    ours = methods["fed-grow"]["test_accuracy"]["per_seed"]
    return {name: paired(ours, other["test_accuracy"]["per_seed"]) for name, other in methods.items()
            if name != "fed-grow"}


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


def compute_seconds(methods: dict[str, dict[str, Any]], tuning: dict[str, Any] | None) -> dict[str, Any]:
    """What a comparison's figures cost, summed over its methods' runs and its learning-rate searches, whichever
    sittings measured them (a resumed comparison that keeps everything runs for seconds; these are the hours
    behind its figures): ``wall`` and ``cpu`` seconds, and ``untimed``, the runs and search scores kept from
    before their time was recorded, which the sums leave out."""
    tuning = tuning or {}
    searches = [search for search in (tuning, tuning.get("own_source"), tuning.get("operator"))
                if search and "chosen" in search]
    runs = [run for summary in methods.values() for run in summary["runs"]]
    untimed = sum(run.get("cpu_seconds") is None for run in runs) + sum(_untimed_scores(search) for search in searches)
    return {clock: round(sum(run.get(f"{clock}_seconds") or 0.0 for run in runs)
                         + sum(search.get(f"{clock}_seconds", 0.0) for search in searches), 1)
            for clock in ("wall", "cpu")} | {"untimed": untimed}


def _untimed_scores(search: dict[str, Any]) -> int:
    """A search's party scores without a recorded time: all of them in a search recorded before searches were
    timed."""
    if "cpu_seconds" in search:
        return search.get("untimed_scores", 0)
    return sum(len(scores) for scores in search.get("dev_accuracy_per_party", {}).values())
