"""Where own-source fine-tuning starts in `paper-agnews`: each party's source with its trained head, before any step.

A grown party model starts as its source's function (the Dual-LiGO start, `global_ligo_share.py`'s "both at the
start"), so the two methods' gains over 50 steps compare from this common start. Scores each party's own-source
model as `fedgrow reproduce` builds it (`reproduce.methods.own_source_model`) on the common test split.

    python benchmarks/diagnostics/own_source_start.py runs/reproduce/paper-agnews/dirichlet-0.5/seed-0/own-source.json \
        --output benchmarks/diagnostics/own_source_start.dirichlet-0.5.json

The argument is a kept run of `fedgrow reproduce` (its config: the partition, the sources' cache).
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

from average_sources import kept_run_arguments

from fedgrow_hf.experiment.data import common_test_set
from fedgrow_hf.reproduce.methods import own_source_model, test_scores


def main() -> None:
    args, config = kept_run_arguments(__doc__.splitlines()[0])
    test = common_test_set(config)
    with tempfile.TemporaryDirectory(prefix="own-source-start-") as scratch:
        scores = [test_scores(own_source_model(config, party).eval(), config, test, Path(scratch))["accuracy"]
                  for party in range(config.num_parties)]
    figures = {"command": " ".join(["python", *sys.argv]), "test_accuracy_per_party": scores,
               "test_accuracy_mean": sum(scores) / len(scores)}
    print(json.dumps(figures, indent=1))
    if args.output:
        Path(args.output).write_text(json.dumps(figures, indent=1) + "\n")


if __name__ == "__main__":
    main()
