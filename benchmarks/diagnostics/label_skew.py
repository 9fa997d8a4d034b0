"""How far a party's own labels bound its common-test accuracy in `paper-agnews`, method by method.

Under the Dirichlet split (alpha = 0.5) most parties' training shares hold one or two of AG News' four classes in
bulk. A classifier whose task head only ever trains on one party's labels (independent growth, own-source, and
Fed-Grow too: only the Global-LiGO leaves a party, the head stays private) gets no gradient that would make it
predict a class the party never saw, so the common test split's articles of those classes are lost to it whatever
the federation shares. Fed-Scratch averages every weight, the head included, and is not bound this way.

For each party of one partition of a `fedgrow reproduce` comparison (its results.json), this reports:

1. its training share's examples per class, and the share of the common test split in the classes it holds at
   least `--min-examples` examples of (`test_share_of_its_classes`: about the most a head trained on its labels
   alone can score there), and in its majority class (what always predicting it scores);
2. each method's common-test accuracy for the party (mean over seeds, results.json's `per_party`), beside them;

the mean over parties of `test_share_of_its_classes`, and per method: the mean over parties of its accuracy and its
correlation across parties with `test_share_of_its_classes`.

    python benchmarks/diagnostics/label_skew.py benchmarks/results/paper-agnews/results.json \
        --partition dirichlet-0.5 --output benchmarks/diagnostics/label_skew.dirichlet-0.5.json
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

from fedgrow_hf.experiment.config import FederationConfig
from fedgrow_hf.experiment.data import common_test_set, party_shares


def party_rows(config: FederationConfig, test_labels: list[int], min_examples: int) -> list[dict[str, Any]]:
    """Per party: its training share's class counts and the common test split's share in its classes."""
    test_counts, rows = Counter(test_labels), []
    for party in range(config.num_parties):
        counts = Counter(int(label) for label in party_shares(config, party)[0]["label"])
        held = [label for label, count in counts.items() if count >= min_examples]
        majority = counts.most_common(1)[0][0]
        rows.append({
            "party": party,
            "train_examples_per_class": {str(label): counts.get(label, 0) for label in range(config.model.num_labels)},
            "classes_held": sorted(held),
            "test_share_of_its_classes": sum(test_counts[label] for label in held) / len(test_labels),
            "test_share_of_its_majority_class": test_counts[majority] / len(test_labels),
        })
    return rows


def method_figures(methods: dict[str, Any], rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Per method: its mean common-test accuracy and how it relates across parties to each party's bound; each
    party's row (``rows``, from :func:`party_rows`) gets every method's accuracy for it (``test_accuracy``)."""
    bound = np.array([row["test_share_of_its_classes"] for row in rows])
    figures = {}
    for method, summary in methods.items():
        accuracy = np.array(summary["test_accuracy"]["per_party"])
        for row, value in zip(rows, accuracy, strict=True):
            row.setdefault("test_accuracy", {})[method] = float(value)
        figures[method] = {
            "test_accuracy_mean": float(accuracy.mean()),
            "correlation_across_parties": _correlation(accuracy, bound),
            "parties_above_their_classes_share": int((accuracy > bound).sum()),
        }
    return figures


def _correlation(first: np.ndarray, second: np.ndarray) -> float | None:
    """Pearson's r across parties; None where either is the same for every party (no correlation to speak of)."""
    if first.std() == 0 or second.std() == 0:
        return None
    return float(np.corrcoef(first, second)[0, 1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("results", help="a partitioned comparison's results.json (fedgrow reproduce paper-agnews)")
    parser.add_argument("--partition", required=True, help="which of its partitions (dirichlet-0.5, iid)")
    parser.add_argument("--min-examples", type=int, default=10,
                        help="training examples of a class for a party to count as holding it")
    parser.add_argument("--output", help="also write the figures here (JSON)")
    args = parser.parse_args()
    comparison = json.loads(Path(args.results).read_text())["partitions"][args.partition]
    config = FederationConfig.from_dict(comparison["config"])
    test_labels = [int(label) for label in common_test_set(config)["labels"]]
    rows = party_rows(config, test_labels, args.min_examples)
    figures = method_figures(comparison["methods"], rows)
    bound_mean = float(np.mean([row["test_share_of_its_classes"] for row in rows]))
    for row in rows:
        print(json.dumps(row))
    print(json.dumps({"test_share_of_its_classes_mean": bound_mean, "methods": figures}, indent=2))
    if args.output:
        Path(args.output).write_text(json.dumps({"command": " ".join(["python", *sys.argv]), "partition": args.partition,
                                                 "min_examples": args.min_examples, "parties": rows,
                                                 "test_share_of_its_classes_mean": bound_mean, "methods": figures},
                                                indent=2) + "\n")


if __name__ == "__main__":
    main()
