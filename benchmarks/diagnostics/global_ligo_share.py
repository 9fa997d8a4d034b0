"""What a Fed-Grow party's model owes to the federation: its shared Global-LiGO beside its private state.

In `paper-agnews` a Fed-Grow party trains its Local-LiGO, its task head and the Global-LiGO; only the Global-LiGO
leaves the party, and the server averages it. So Fed-Grow can differ from independent growth only through what the
trained Global-LiGO does for a party's model. For each party of a kept Fed-Grow run (the final Global-LiGO and the
party's private state after the last round, both in the run's folder), this scores the model with each part at its
start or as trained, two by two, on the party's held-out share and on the common test split:

- both trained: the party's final model (what the run scored, before its merge);
- the Global-LiGO back at its start, the private state trained: what the federated operator training adds;
- the Global-LiGO trained, the private state at its start; both at the start (the grown model before any step);

and how far each part moved (the norm of its change over the norm of its start, :func:`operator_rate.moved`).

    python benchmarks/diagnostics/global_ligo_share.py runs/reproduce/paper-agnews/dirichlet-0.5/seed-0/fed-grow.json \
        --output benchmarks/diagnostics/global_ligo_share.dirichlet-0.5.json

The argument is a Fed-Grow run that `fedgrow reproduce` kept, with its folder beside it (``seed-S/fed-grow/``).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import torch
from average_sources import kept_run_arguments
from operator_rate import moved
from safetensors.torch import load_file

from fedgrow_hf.experiment.data import common_test_set, party_datasets
from fedgrow_hf.experiment.parties import build_party_model
from fedgrow_hf.federated.party import party_dir_of
from fedgrow_hf.federated.phases import FINAL_OPERATOR
from fedgrow_hf.federated.trainer import PRIVATE_WEIGHTS, round_dir
from fedgrow_hf.reproduce.methods import test_scores

VARIANTS = {  # name: (Global-LiGO trained, private state trained)
    "both trained (the run's model)": (True, True),
    "Global-LiGO at its start": (False, True),
    "private state at its start": (True, False),
    "both at the start": (False, False),
}


def private_state(model: torch.nn.Module, names: Iterable[str]) -> dict[str, torch.Tensor]:
    """The model's parameters ``names`` (those of a party's private-state file: its Local-LiGO and head)."""
    parameters = dict(model.named_parameters())
    return {name: parameters[name].detach().clone() for name in names}


def load_variant(model: torch.nn.Module, global_state: dict[str, torch.Tensor], private: dict[str, torch.Tensor]) -> None:
    """Put ``global_state`` in the model's Global-LiGO and ``private`` (by parameter name) in the rest."""
    model.base_model.load_global_state_dict(global_state)
    parameters = dict(model.named_parameters())
    with torch.no_grad():
        for name, value in private.items():
            parameters[name].copy_(value)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--parties", type=int, nargs="+", help="default: every party")


def main() -> None:
    args, config = kept_run_arguments(__doc__.splitlines()[0], add_arguments)
    run_dir = Path(args.run).with_suffix("")
    trained_global = load_file(str(run_dir / FINAL_OPERATOR))
    test, rows = common_test_set(config), []
    with tempfile.TemporaryDirectory(prefix="global-ligo-share-") as scratch:
        for party in args.parties if args.parties is not None else range(config.num_parties):
            model = build_party_model(config, party).eval()
            saved = round_dir(party_dir_of(run_dir, party), config.federation.rounds) / PRIVATE_WEIGHTS
            trained_private = load_file(str(saved))
            start_global, start_private = model.base_model.global_state_dict(), private_state(model, trained_private)
            held_out = party_datasets(config, party)[1]
            row: dict[str, Any] = {"party": party, "global_ligo_moved": moved(start_global, trained_global),
                                   "private_state_moved": moved(start_private, trained_private)}
            for name, (global_trained, private_trained) in VARIANTS.items():
                load_variant(model, trained_global if global_trained else start_global,
                             trained_private if private_trained else start_private)
                row[name] = {split: test_scores(model, config, data, Path(scratch))["accuracy"]
                             for split, data in (("held_out", held_out), ("test", test))}
            rows.append(row)
            print(json.dumps(row), file=sys.stderr, flush=True)
    means = {name: {split: sum(row[name][split] for row in rows) / len(rows) for split in ("held_out", "test")}
             for name in VARIANTS}
    figures = {"command": " ".join(["python", *sys.argv]), "parties": rows, "means": means}
    print(json.dumps(means, indent=1))
    if args.output:
        Path(args.output).write_text(json.dumps(figures, indent=1) + "\n")


if __name__ == "__main__":
    main()
