"""Time of a learning-rate search's runs with and without a learning curve (``fedgrow_hf.reproduce.tuning``).

A search reads only each run's final development accuracy, so its runs evaluate at the end of each phase
only. The comparison's runs evaluate every ``local_steps`` as well (their learning curves are figures of
the comparison). This measures both, side by side on one machine, for one party's run of each search
(independent growth for the target's rate, own-source fine-tuning for the sources') at the preset's
full-model rate, the end-only run first (so that any warm-up of the process counts against it), and checks
that both end on the same development figures.

    python benchmarks/bench_tuning.py text-small --data-dir ../shared/data --party 0
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path
from typing import Any

import datasets

from fedgrow_hf.experiment.config import FederationConfig
from fedgrow_hf.experiment.data import party_datasets
from fedgrow_hf.experiment.parties import load_source
from fedgrow_hf.experiment.training import finetune_learning_rate
from fedgrow_hf.reproduce import preset_config
from fedgrow_hf.reproduce.tuning import DEV_FRACTION, SEARCHES, SOURCES, TARGET


def search_run(config: FederationConfig, search: str, party: int, train: datasets.Dataset, dev: datasets.Dataset,
               output_dir: Path, curve: bool) -> dict[str, Any]:
    """One party's run of ``search`` (as :mod:`fedgrow_hf.reproduce.tuning` runs it, or with a curve):
    its wall seconds, evaluations and final development figures."""
    started = time.monotonic()
    records = SEARCHES[search].run(config, party, train, dev, output_dir, curve=curve)
    return {"seconds": time.monotonic() - started, "evaluations": len(records),
            "final": records[-1]["parties"][str(party)]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("preset", help="a preset of fedgrow reproduce (e.g. text-small)")
    parser.add_argument("--data-dir", required=True, help="the folder holding the preset's data (../shared/data)")
    parser.add_argument("--party", type=int, default=0, help="whose training share is split into train + dev")
    parser.add_argument("--repeats", type=int, default=1, help="pairs of runs per search (end only, then curve)")
    parser.add_argument("--output", help="also write the figures to this JSON file")
    args = parser.parse_args()

    config = FederationConfig.from_dict(preset_config(args.preset, args.data_dir))
    rows = []
    with tempfile.TemporaryDirectory() as work:
        config.data.source_cache = str(Path(work) / "sources")
        train, _ = party_datasets(config, args.party)
        split = train.train_test_split(test_size=DEV_FRACTION, seed=config.data_seed)
        load_source(config, args.party)  # a derived source is distilled once, outside the timed runs
        for search in (TARGET, SOURCES):
            for repeat in range(args.repeats):
                runs = {curve: search_run(config, search, args.party, split["train"], split["test"],
                                          Path(work) / f"{search}-{repeat}-{curve}", curve) for curve in (False, True)}
                rows.append({"search": search, "repeat": repeat, "with_curve": runs[True], "end_only": runs[False],
                             "end_only_over_curve": runs[False]["seconds"] / runs[True]["seconds"],
                             "same_final_figures": runs[True]["final"] == runs[False]["final"]})
    print(f"{args.preset}, party {args.party} ({len(split['train'])} training, {len(split['test'])} development "
          f"examples), full-model rate {finetune_learning_rate(config):g}")
    print("| search | evaluations with curve / end only | seconds with curve | seconds end only | end only / curve "
          "| same final figures |")
    print("|---|---|---|---|---|---|")
    for row in rows:
        curve, end = row["with_curve"], row["end_only"]
        print(f"| {row['search']} | {curve['evaluations']} / {end['evaluations']} | {curve['seconds']:.1f} | "
              f"{end['seconds']:.1f} | {row['end_only_over_curve']:.3f} | {row['same_final_figures']} |")
    if args.output:
        Path(args.output).write_text(json.dumps(rows, indent=2), encoding="utf-8")


if __name__ == "__main__":
    main()
