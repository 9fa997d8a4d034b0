"""How much of a Fed-Grow party's own step on the Global-LiGO survives the server's average.

Independent growth moves a party's Global-LiGO by the party's own update each round; Fed-Grow moves it by the
example-weighted average of every party's update. Where the parties' updates point different ways the average is
shorter than each of them, so at one operator rate (the preset's, chosen by scoring independent growth) a Fed-Grow
party's shared operator takes the shorter step. This reruns the first round of a kept Fed-Grow run exactly as its
parties ran it (`federated.party.train_party_round`, from the start every party builds, in a scratch folder) and
reports, over the Global-LiGO's parameters flattened: each party's update norm and its cosine with the average
and with every other party's, and `average_over_own`: the average's norm over the example-weighted mean of the
parties' norms (1: they agree; about 1/sqrt(parties) for unrelated directions of equal size).

    python benchmarks/diagnostics/update_agreement.py runs/reproduce/paper-agnews/dirichlet-0.5/seed-0/fed-grow.json \
        --output benchmarks/diagnostics/update_agreement.dirichlet-0.5.json

The argument is a kept Fed-Grow run of `fedgrow reproduce` (its config: partition, sources' cache, seed, rate).
"""

from __future__ import annotations

import json
import sys
import tempfile
from itertools import combinations
from pathlib import Path

import torch
from average_sources import kept_run_arguments

from fedgrow_hf.experiment.parties import build_party_model
from fedgrow_hf.federated.party import train_party_round
from fedgrow_hf.federated.screening import WEIGHT_KEY


def flat_state(state: dict[str, torch.Tensor]) -> torch.Tensor:
    """Every tensor of ``state``, flattened into one vector: every coordinate of an update counts (unlike
    ``average_sources.flat``, which leaves out a model's 1-D weights to compare models, not steps)."""
    return torch.cat([state[key].detach().flatten().double() for key in sorted(state)])


def main() -> None:
    args, config = kept_run_arguments(__doc__.splitlines()[0])
    start = build_party_model(config, 0).base_model.global_state_dict()  # the same for every party
    recorded = json.loads(Path(args.run).read_text())["summary"]["records"][0]["parties"]  # the run's round 1
    updates, weights, norms, losses = {}, {}, {}, {}
    with tempfile.TemporaryDirectory(prefix="update-agreement-") as scratch:
        for party in range(config.num_parties):
            state, metrics = train_party_round(config, Path(scratch), party, start, server_round=1)
            updates[party], weights[party] = flat_state(state) - flat_state(start), float(metrics[WEIGHT_KEY])
            norms[party] = float(updates[party].norm())
            losses[party] = (metrics["train_loss"], recorded[str(party)]["train_loss"])
            print(json.dumps({"party": party, "update_norm": norms[party], "train_loss_rerun_and_run": losses[party]}),
                  file=sys.stderr, flush=True)
    total = sum(weights.values())
    average = sum(weights[party] / total * update for party, update in updates.items())
    own = sum(weights[party] / total * norms[party] for party in updates)
    cosine = torch.nn.functional.cosine_similarity
    pairwise = [float(cosine(updates[a], updates[b], dim=0)) for a, b in combinations(updates, 2)]
    figures = {
        "command": " ".join(["python", *sys.argv]),
        "round": 1,
        "parties": [{"party": party, "examples": weights[party], "update_norm": norms[party],
                     "cosine_with_average": float(cosine(update, average, dim=0)),
                     "train_loss_rerun_and_run": losses[party]}  # the rerun is the run's round 1 when they agree
                    for party, update in updates.items()],
        "pairwise_cosine_mean": sum(pairwise) / len(pairwise),
        "pairwise_cosine_min": min(pairwise),
        "pairwise_cosine_max": max(pairwise),
        "average_norm": float(average.norm()),
        "own_norm_weighted_mean": own,
        "average_over_own": float(average.norm()) / own,
    }
    print(json.dumps(figures, indent=1))
    if args.output:
        Path(args.output).write_text(json.dumps(figures, indent=1) + "\n")


if __name__ == "__main__":
    main()
