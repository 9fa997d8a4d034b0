"""What median clipping (``[federation].update_clip_factor``, :mod:`fedgrow_hf.federated.clipping`) costs
honest parties: Fed-Grow on a preset (or a federation config file) with the default clipping (1.0) and
without it (0.0), paired by seed (same data, sources, initialisation and batch order): the parties' mean
accuracy on the common test set, and their example-weighted held-out loss after phase 1 and after phase 2
(more sensitive than accuracy where the models are small).

    python benchmarks/bench_clipping.py --preset tiny --data ../shared/data --seeds 0 1 2 --out clipping.json
    python benchmarks/bench_clipping.py --preset examples/configs/tiny.toml --data ../shared/data
    python benchmarks/bench_clipping.py --preset text-small --data ../shared/data --phase2 merge \
        --work-dir runs/bench-clipping/text-small

With ``--work-dir``, each (factor, seed) run's figures are kept in that folder and a rerun of the same command
skips the runs already there, so a measurement can span several sittings.

``--phase2 merge`` stops each run where clipping stops acting in LiGO's regime: after the federated operator
phase, each party's grown model merged and tested as the operator made it (no local fine-tuning after it,
which clipping does not touch and which would only add noise and time).
"""

from __future__ import annotations

import argparse
import copy
import json
import statistics
import tempfile
from pathlib import Path

from datasets import Dataset

from fedgrow_hf.experiment.config import FederationConfig
from fedgrow_hf.experiment.data import common_test_set
from fedgrow_hf.reproduce.methods import run_method
from fedgrow_hf.reproduce.runner import load_comparison

FACTORS = (1.0, 0.0)


def measure(preset: str, data: Path, seeds: list[int], work_dir: Path, phase2: str | None = None) -> dict:
    """Each seed's mean common-test accuracy over the parties, with and without clipping, and the paired
    differences (clipped - unclipped); ``phase2`` overrides the preset's ``[federation].phase2``."""
    base = load_comparison(preset, data).config
    if phase2 is not None:
        base.federation.phase2 = phase2
        base.validate()
    test_set = common_test_set(base)
    accuracy: dict[float, list[float]] = {factor: [] for factor in FACTORS}
    losses: dict[float, list[dict[str, float]]] = {factor: [] for factor in FACTORS}
    clipped_rounds: list[int] = []
    for seed in seeds:
        for factor in FACTORS:
            figures = _run_figures(base, seed, factor, work_dir / f"clip-{factor:g}" / f"seed-{seed}", test_set)
            accuracy[factor].append(figures["accuracy"])
            losses[factor].append(figures["final_eval_loss"])
            if factor:
                clipped_rounds.append(figures["rounds_with_a_clipped_update"])
    differences = [clipped - plain for clipped, plain in zip(accuracy[1.0], accuracy[0.0], strict=True)]
    return {"preset": preset, "phase2": base.federation.phase2, "seeds": seeds, "accuracy_clipped": accuracy[1.0], "accuracy_unclipped": accuracy[0.0],
            "paired_difference": differences, "mean_difference": statistics.fmean(differences),
            "final_eval_loss_clipped": losses[1.0], "final_eval_loss_unclipped": losses[0.0],
            "rounds_with_a_clipped_update": clipped_rounds}


def _run_figures(base: FederationConfig, seed: int, factor: float, run_dir: Path, test_set: Dataset) -> dict:
    """One run's figures, read back from ``run_dir/figures.json`` when an earlier sitting finished it: a
    run is recorded only once it is complete, so an interrupted one is simply run again."""
    kept = run_dir / "figures.json"
    if kept.is_file():
        return json.loads(kept.read_text(encoding="utf-8"))
    config = copy.deepcopy(base)
    config.seed, config.federation.update_clip_factor = seed, factor
    run = run_method(config, "fed-grow", run_dir, test_set, engine="inprocess")
    figures = {"accuracy": statistics.fmean(party["accuracy"] for party in run.test),
               "final_eval_loss": {record["phase"]: _weighted_loss(record) for record in run.records},
               "rounds_with_a_clipped_update": sum(bool(record.get("clipped")) for record in run.records),
               "wall_seconds": run.wall_seconds}
    kept.write_text(json.dumps(figures, indent=2) + "\n", encoding="utf-8")
    return figures


def _weighted_loss(record: dict) -> float:
    """The parties' held-out loss at one evaluation point, weighted by their example counts."""
    parties = record["parties"].values()
    return sum(p["eval_loss"] * p["num-examples"] for p in parties) / sum(p["num-examples"] for p in parties)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="tiny")
    parser.add_argument("--data", type=Path, required=True, help="the folder holding sst2/ (and mnist/)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--phase2", choices=("local", "federated", "merge"),
                        help="override the preset's phase 2 (merge: stop after the federated operator phase)")
    parser.add_argument("--out", type=Path)
    parser.add_argument("--work-dir", type=Path,
                        help="keep each run's figures here and skip the runs already done (default: a temporary folder)")
    args = parser.parse_args()
    if args.work_dir is not None:
        result = measure(args.preset, args.data, args.seeds, args.work_dir, args.phase2)
    else:
        with tempfile.TemporaryDirectory() as work_dir:
            result = measure(args.preset, args.data, args.seeds, Path(work_dir), args.phase2)
    text = json.dumps(result, indent=2)
    print(text)
    if args.out:
        args.out.write_text(text + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
