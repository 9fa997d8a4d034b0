"""How far `paper-agnews`' 50 operator-only steps move a grown-head party, by the operator's learning rate.

With each party's classifier grown from its source's (the preset's protocol since 2026-12-05), a Fed-Grow party's
model starts where its source ends, and at the preset's untuned operator rate (1e-3, set when heads started fresh)
its held-out accuracy stays flat over the 50 steps while own-source fine-tuning (every weight, 1e-4) climbs. Is
the rate what holds growth back? Per party, this trains the party's Dual-LiGO model alone (independent growth,
as `fedgrow reproduce` runs it) at each operator rate, and own-source fine-tuning at the preset's full-model rate,
and reports the held-out accuracy after every 5 steps, the common-test accuracy at the end, and how far the
(merged) weights moved: the Frobenius norm of the change over that of the start.

    python benchmarks/diagnostics/operator_rate.py runs/reproduce/paper-agnews/iid/seed-0/fed-grow.json \
        --parties 0 3 9 --rates 1e-3 1e-2 --output benchmarks/diagnostics/operator_rate.iid.json

The argument is a run that `fedgrow reproduce` kept (its config: the partition, the sources' cache, seed 0). The
held-out share is the party's own (carved from its training data); the figures chose nothing: `--tune` chooses
the preset's rates on development splits (fedgrow_hf/reproduce/tuning.py).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
from average_sources import kept_run_arguments

from fedgrow_hf.experiment.data import common_test_set, party_datasets
from fedgrow_hf.experiment.parties import build_party_model
from fedgrow_hf.reproduce.methods import fine_tune_own_source, grow_dual_alone, own_source_model, test_scores
from fedgrow_hf.reproduce.tuning import at_operator_rate


def weights(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {key: value.detach().clone() for key, value in model.state_dict().items() if value.dtype.is_floating_point}


def moved(start: dict[str, torch.Tensor], end: dict[str, torch.Tensor]) -> float:
    """How far ``end`` is from ``start``: the norm of the change over the norm of the start, over all weights."""
    change = sum(float((end[key] - start[key]).pow(2).sum()) for key in start)
    return (change / sum(float(value.pow(2).sum()) for value in start.values())) ** 0.5


def row(party: int, method: str, rate: float, records: list[dict[str, Any]], test: float, distance: float,
        cpu: float) -> dict[str, Any]:
    return {"party": party, "method": method, "rate": rate,
            "held_out_curve": [round(record["parties"][str(party)]["accuracy"], 4) for record in records],
            "test": round(test, 4), "moved": round(distance, 5), "cpu": round(cpu)}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--parties", type=int, nargs="+", default=[0, 3, 9])
    parser.add_argument("--rates", type=float, nargs="+", default=[1e-3, 1e-2], help="operator learning rates")


def main() -> None:
    args, config = kept_run_arguments(__doc__.splitlines()[0], add_arguments)
    test = common_test_set(config)
    rows = []
    with tempfile.TemporaryDirectory(prefix="operator-rate-") as scratch:
        folder = Path(scratch)
        for party in args.parties:
            train, held_out = party_datasets(config, party)
            start = weights(build_party_model(config, party).merge_and_unload(progressbar=False))
            for rate in args.rates:
                at_rate, cpu = at_operator_rate(config, rate), time.process_time()
                records, model, _ = grow_dual_alone(at_rate, party, train, held_out, folder / f"grown-{party}-{rate:g}")
                accuracy = test_scores(model, at_rate, test, folder / "test")["accuracy"]
                rows.append(row(party, "independent growth (grown head)", rate, records, accuracy,
                                moved(start, weights(model)), time.process_time() - cpu))
                print(json.dumps(rows[-1]), file=sys.stderr, flush=True)
            own_start, cpu = weights(own_source_model(config, party)), time.process_time()
            records, model = fine_tune_own_source(config, party, train, held_out, folder / f"own-{party}")
            rows.append(row(party, "own-source", config.federation.finetune_learning_rate, records,
                            test_scores(model, config, test, folder / "test")["accuracy"], moved(own_start, weights(model)),
                            time.process_time() - cpu))
            print(json.dumps(rows[-1]), file=sys.stderr, flush=True)
    figures = {"run": args.run, "rows": rows}
    print(json.dumps(figures, indent=1))
    if args.output:
        Path(args.output).write_text(json.dumps(figures, indent=1) + "\n")


if __name__ == "__main__":
    main()
