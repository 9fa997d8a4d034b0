"""What the parties' sources already know, beside what `paper-agnews`' methods reach in their 50 steps.

Each `paper-agnews` source is a BERT trained from scratch as a classifier on its party's own share (10 epochs); the
cache keeps its encoder, not its head, and every method starts a fresh head (own-source on the source, the growth
methods on the grown model). This measures, per party, a linear probe (logistic regression to convergence) fitted on
the frozen features (mean-pooled last hidden states) of the party's training share:

1. of its source: scored on the party's held-out share and on the common test split: about what the source's own
   discarded head scored, and what a party gets by training a linear head on its source alone;
2. of its grown model as the Dual-LiGO starts it (before any step), on the held-out share: whether growth keeps what
   the source knows (the 256 -> 320 width is no multiple, so the start is not exact).

A party whose training share holds one class has no probe (it always predicts that class: its share of the test
split is counted).

    python benchmarks/diagnostics/source_probe.py runs/reproduce/paper-agnews/iid/seed-0/fed-grow.json \
        --output benchmarks/diagnostics/source_probe.iid.json

The argument is a run that `fedgrow reproduce` kept (its config names the sources' cache).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import numpy as np
import torch
from average_sources import features, kept_run_arguments
from sklearn.linear_model import LogisticRegression

from fedgrow_hf.experiment.data import common_test_set, party_datasets
from fedgrow_hf.experiment.parties import build_party_model, load_source


class LastHiddenState(torch.nn.Module):
    """A grown classifier seen as an encoder: its last hidden states, as an encoder returns them."""

    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> Any:
        hidden = self.model(input_ids=input_ids, attention_mask=attention_mask, output_hidden_states=True).hidden_states
        return type("Output", (), {"last_hidden_state": hidden[-1]})


def labels_of(dataset) -> list[int]:
    return [int(label) for label in dataset["labels"]]


def main() -> None:
    args, config = kept_run_arguments(__doc__.splitlines()[0])
    test = common_test_set(config)
    test_labels = labels_of(test)
    parties = []
    for party in range(config.num_parties):
        source = load_source(config, party).eval()
        train, held_out = party_datasets(config, party)
        labels = labels_of(train)
        row = {"party": party, "source_layers": source.config.num_hidden_layers, "train_examples": len(labels)}
        if len(set(labels)) < 2:
            row["only_class"] = labels[0]
            row["source_probe_test"] = test_labels.count(labels[0]) / len(test_labels)
        else:
            probe = LogisticRegression(max_iter=3000).fit(features(source, train).numpy(), labels)
            grown = LastHiddenState(build_party_model(config, party).eval())
            grown_probe = LogisticRegression(max_iter=3000).fit(features(grown, train).numpy(), labels)
            row.update({
                "source_probe_held_out": float(probe.score(features(source, held_out).numpy(), labels_of(held_out))),
                "source_probe_test": float(probe.score(features(source, test).numpy(), test_labels)),
                "grown_start_probe_held_out": float(grown_probe.score(features(grown, held_out).numpy(),
                                                                      labels_of(held_out))),
            })
        parties.append(row)
        print(json.dumps(row), flush=True)
    summary = {"source_probe_test_mean": float(np.mean([row["source_probe_test"] for row in parties]))}
    print(json.dumps(summary))
    if args.output:
        Path(args.output).write_text(json.dumps({"command": " ".join(["python", *sys.argv]), "parties": parties,
                                                 **summary}, indent=2) + "\n")


if __name__ == "__main__":
    main()
