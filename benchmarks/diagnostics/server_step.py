"""Whether a server step gives Fed-Grow what the server's average takes from it.

`update_agreement.py` measured why Fed-Grow's shared operator moves less than an independent party's under the
paper's protocol: the parties' Global-LiGO updates are nearly orthogonal, so their example-weighted average is
about half a party's own step (0.48 under Dirichlet 0.5, 0.49 IID). A server learning rate (FedOpt's;
`[federation].server_learning_rate`) of about 2 gives the average a party's step length back, along the
parties' common direction. This reruns kept Fed-Grow runs of `fedgrow reproduce` with that rate and nothing else
changed (same partition, sources, seed and operator rate), in-process, and sets each seed's mean common-test
accuracy beside the kept Fed-Grow run's and independent growth's (`independent.json` beside it), paired by seed.

    python benchmarks/diagnostics/server_step.py runs/reproduce/paper-agnews/iid/seed-{0,1,2}/fed-grow.json \
        --rate 2 --output benchmarks/diagnostics/server_step.iid.json

Each rerun is kept in `--work-dir/<partition>/seed-S/` as it finishes, and an interrupted one resumes from its
last round, so the command can be run again after a kill.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path
from typing import Any

from fedgrow_hf.experiment.config import FederationConfig
from fedgrow_hf.experiment.data import common_test_set
from fedgrow_hf.reproduce.kept import kept_or_run
from fedgrow_hf.reproduce.methods import run_method
from fedgrow_hf.reproduce.stats import aggregation_effect, paired, seed_summary

METHOD = "fed-grow"


def rerun(kept_run: Path, rate: float, work_dir: Path) -> dict[str, Any]:
    """The kept Fed-Grow run ``kept_run`` again with the server step ``rate``, beside the kept figures."""
    config = FederationConfig.from_dict(json.loads(kept_run.read_text())["config"])
    config.federation.server_learning_rate = rate
    config.validate()
    partition, seed_dir = kept_run.parent.parent.name, kept_run.parent.name
    folder = work_dir / partition / seed_dir
    summary = kept_or_run(
        folder / f"{METHOD}.json", config, True, print, f"{METHOD} with server_learning_rate={rate}",
        lambda seeded: seed_summary(run_method(seeded, METHOD, folder, common_test_set(seeded), engine="inprocess",
                                               resume=True)),
    )
    kept = {name: json.loads((kept_run.parent / f"{name}.json").read_text())["summary"]
            for name in (METHOD, "independent")}
    runs = {"server_step": summary, "fed_grow": kept[METHOD], "independent": kept["independent"]}
    return {
        "partition": partition,
        "seed": config.seed,
        # each run's accuracy, mean over its parties (what `fedgrow reproduce` reports per seed): the common test
        # split, then the parties' own held-out shares
        **{name: statistics.fmean(run["test_accuracy"]) for name, run in runs.items()},
        **{f"held_out_{name}": statistics.fmean(run["accuracy"]) for name, run in runs.items()},
        # how far the server's new state moves a party, beside how far its own steps do (reproduce's aggregation_effect)
        **{f"aggregation_effect_{name}": moved_by_average(runs[name]) for name in ("server_step", "fed_grow")},
        "cpu_seconds": summary.get("cpu_seconds"),
    }


def moved_by_average(summary: dict[str, Any]) -> dict[str, float]:
    """One run's :func:`aggregation_effect`: the mean |change| of a party's held-out loss at each average and over
    its own steps in a round."""
    effect = aggregation_effect({"runs": [summary]})
    return {key: effect[key] for key in ("by_average", "by_local_training")}


def paired_points(per_seed: list[dict[str, Any]], ours: str, theirs: str) -> dict[str, Any]:
    """``ours`` minus ``theirs`` per seed, in points (:func:`reproduce.stats.paired`)."""
    return paired([seed[ours] for seed in per_seed], [seed[theirs] for seed in per_seed], scale=100)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", type=Path, help="kept Fed-Grow runs (WORK_DIR/<partition>/seed-S/fed-grow.json)")
    parser.add_argument("--rate", type=float, default=2.0, help="the server learning rate (default 2)")
    parser.add_argument("--work-dir", type=Path, default=Path("runs/diagnostics/server-step"))
    parser.add_argument("--output", help="also write the figures here (JSON)")
    args = parser.parse_args()
    per_seed = [rerun(run, args.rate, args.work_dir) for run in args.runs]
    figures = {
        "command": " ".join(["python", *sys.argv]),
        "server_learning_rate": args.rate,
        "per_seed": per_seed,
        "server_step_minus_fed_grow": paired_points(per_seed, "server_step", "fed_grow"),
        "server_step_minus_independent": paired_points(per_seed, "server_step", "independent"),
        "held_out_server_step_minus_independent": paired_points(per_seed, "held_out_server_step", "held_out_independent"),
    }
    print(json.dumps(figures, indent=1))
    if args.output:
        Path(args.output).write_text(json.dumps(figures, indent=1) + "\n")


if __name__ == "__main__":
    main()
