"""Why averaging the parties' intermediate models (`fed-grow-shared-intermediate`, the Fed-Grow authors' code)
leaves every party at the majority class: are the parties' models in a common basis at all?

In `paper-agnews` each party's source is trained from scratch, from its own random start, on its own share. A
FedAvg of models from different random starts is known to destroy what each computes (their hidden units are
not aligned); an intermediate model is the party's source through its Local-LiGO, which starts as a near-copy of
the source. On a comparison's cached sources (their encoders: the pretraining head is not kept), this measures,
for each pair of parties whose sources have the same shape:

1. cosine similarity of their weights (every weight matrix, flattened), and of their grown intermediate models
   as the Local-LiGO starts them (every party's has the intermediate shape);
2. what they compute: linear CKA (centred kernel alignment, blind to any rotation of the hidden units) between
   the mean-pooled last hidden states of two encoders on the same common-test articles: source i against
   source j, and source i against the average of the two (every weight averaged);
3. what is left of what party i's head reads: a linear probe fitted on source i's features of i's training
   share, scored on i's held-out share with source i's features, then with the average's in their place (beside
   the share of i's majority class, which a probe reading nothing scores);
4. control, a common start: source i fine-tuned on party j's share (as a classifier, the preset's full-model
   rate, for a party's steps), then compared with source i the same way, averaged with it too.

Run on both partitions of `paper-agnews` (seed 0's runs; the sources depend on the data seed only):
`benchmarks/diagnostics/average_sources.<partition>.json` and benchmarks/README.

    python benchmarks/diagnostics/average_sources.py runs/reproduce/paper-agnews/dirichlet-0.5/seed-0/fed-grow.json \
        --output benchmarks/diagnostics/average_sources.dirichlet-0.5.json

The argument is a run that `fedgrow reproduce` kept (its config names the sources' cache; a missing source is
trained first, as the run trained it).
"""

from __future__ import annotations

import argparse
import copy
import itertools
import json
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

import torch
from sklearn.linear_model import LogisticRegression
from transformers import BertForSequenceClassification

from fedgrow_hf.data import trim_padding_collator
from fedgrow_hf.experiment.config import FederationConfig
from fedgrow_hf.experiment.data import common_test_set, party_datasets
from fedgrow_hf.experiment.parties import build_party_model, load_source
from fedgrow_hf.experiment.training import finetune_learning_rate
from fedgrow_hf.reproduce.methods import steps_per_party, train_alone

ARTICLES = 512  # common-test articles the encoders' features are compared on


def flat(state: dict[str, torch.Tensor]) -> torch.Tensor:
    """Every weight matrix, flattened into one vector (LayerNorm scales, all near 1 in every model, and biases
    are left out: they would make any two models look alike)."""
    return torch.cat([value.flatten().float() for _, value in sorted(state.items())
                      if value.is_floating_point() and value.dim() >= 2])


def cosine(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(torch.nn.functional.cosine_similarity(a, b, dim=0))


def averaged(encoders: list[torch.nn.Module]) -> torch.nn.Module:
    """A copy of the first encoder holding the mean of every floating-point weight of ``encoders``."""
    result = copy.deepcopy(encoders[0])
    states = [encoder.state_dict() for encoder in encoders]
    result.load_state_dict({key: torch.stack([state[key] for state in states]).mean(0) if value.is_floating_point()
                            else value for key, value in states[0].items()})
    return result


@torch.no_grad()
def features(encoder: torch.nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """Mean-pooled last hidden states of ``batch``'s articles (a collated batch, or a dataset's rows)."""
    if not isinstance(batch, dict):
        batch = trim_padding_collator([batch[index] for index in range(len(batch))])
    hidden = encoder.eval()(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).last_hidden_state
    mask = batch["attention_mask"].unsqueeze(-1).float()
    return (hidden * mask).sum(1) / mask.sum(1)


def linear_cka(x: torch.Tensor, y: torch.Tensor) -> float:
    """Linear CKA of two feature matrices of the same rows (1: the same features up to rotation and scale)."""
    x, y = x - x.mean(0), y - y.mean(0)
    return float((y.T @ x).norm() ** 2 / ((x.T @ x).norm() * (y.T @ y).norm()))


def probe_accuracy(config: FederationConfig, encoder: torch.nn.Module, party: int,
                   others: list[torch.nn.Module]) -> list[float | None]:
    """A linear probe (logistic regression) fitted on ``encoder``'s features of the party's training share, scored
    on its held-out share with ``encoder``'s features and then with each of ``others``' in their place: what is
    left of what the party's head reads when the encoder is replaced (e.g. by an average)."""
    train, held_out = party_datasets(config, party)
    labels = [int(label) for label in train["labels"]]
    if len(set(labels)) < 2:  # a party of one class: nothing for a probe to tell apart
        return [None] * (1 + len(others))
    probe = LogisticRegression(max_iter=2000).fit(features(encoder, train).numpy(), labels)
    return [float(probe.score(features(model, held_out).numpy(), [int(label) for label in held_out["labels"]]))
            for model in (encoder, *others)]


def tuned_copy(config: FederationConfig, encoder: torch.nn.Module, party: int, work: Path) -> torch.nn.Module:
    """``encoder`` under a fresh head, fine-tuned on ``party``'s share as own-source fine-tunes a source."""
    classifier = BertForSequenceClassification(type(encoder.config)(**{**encoder.config.to_dict(),
                                                                        "num_labels": config.model.num_labels}))
    classifier.bert.load_state_dict(encoder.state_dict())
    train, held_out = party_datasets(config, party)
    train_alone(classifier, config, train, {party: held_out}, work, steps=steps_per_party(config),
                learning_rate=finetune_learning_rate(config), every=None)
    return classifier.bert


def _cell(value: float | None) -> str:
    return "one class" if value is None else f"{value:.3f}"


def kept_run_arguments(
    description: str, add_arguments: Callable[[argparse.ArgumentParser], None] | None = None
) -> tuple[argparse.Namespace, FederationConfig]:
    """The command line of a diagnostic of a kept run (``run``, ``--output``, and what ``add_arguments`` adds)
    and the run's config."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("run", help="a kept run of fedgrow reproduce (WORK_DIR/<partition>/seed-S/METHOD.json)")
    parser.add_argument("--output", help="also write the figures here (JSON)")
    if add_arguments is not None:
        add_arguments(parser)
    args = parser.parse_args()
    return args, FederationConfig.from_dict(json.loads(Path(args.run).read_text())["config"])


def main() -> None:
    args, config = kept_run_arguments(__doc__.splitlines()[0])
    sources = {party: load_source(config, party).eval() for party in range(config.num_parties)}
    test = common_test_set(config)
    batch = trim_padding_collator([test[index] for index in range(min(ARTICLES, len(test)))])
    intermediates = {party: flat(build_party_model(config, party).base_model.intermediate_state_dict())
                     for party in sources}
    groups: dict[str, list[int]] = {}
    for party, source in sources.items():
        groups.setdefault(f"{source.config.num_hidden_layers} x {source.config.hidden_size}", []).append(party)
    own = {party: features(source, batch) for party, source in sources.items()}

    def compare(i: int, other: torch.nn.Module) -> dict[str, float]:
        average = averaged([sources[i], other])
        alone, under_average = probe_accuracy(config, sources[i], i, [average])
        labels = [int(label) for label in party_datasets(config, i)[1]["labels"]]
        return {"weight_cosine": cosine(flat(sources[i].state_dict()), flat(other.state_dict())),
                "held_out_majority_share": max(labels.count(label) for label in set(labels)) / len(labels),
                "cka": linear_cka(own[i], features(other, batch)),
                "cka_with_average": linear_cka(own[i], features(average, batch)),
                "probe_accuracy": alone, "probe_accuracy_on_average": under_average}

    pairs = [{"parties": [i, j], **compare(i, sources[j]),
              "intermediate_cosine": cosine(intermediates[i], intermediates[j])}
             for members in groups.values() for i, j in itertools.combinations(members, 2)]
    work = Path(tempfile.mkdtemp(prefix="average-sources-"))
    control = [{"parties": [members[0], members[1]], "steps": steps_per_party(config),
                **compare(members[0], tuned_copy(config, sources[members[0]], members[1], work / f"{members[0]}"))}
               for members in groups.values() if len(members) > 1]
    figures = {"command": " ".join(["python", *sys.argv]), "articles": len(batch["input_ids"]), "groups": groups,
               "pairs": pairs, "common_start_control": control}
    print("| i, j | weight cosine | intermediate cosine (Local-LiGO's start) | CKA i vs j | CKA i vs average of i "
          "and j | i's probe on i | i's probe on the average | i's majority class |")
    print("|---|---|---|---|---|---|---|---|")
    for row in pairs:
        print(f"| {row['parties'][0]}, {row['parties'][1]} | {row['weight_cosine']:.3f} | {row['intermediate_cosine']:.3f} | "
              f"{row['cka']:.3f} | {row['cka_with_average']:.3f} | {_cell(row['probe_accuracy'])} | "
              f"{_cell(row['probe_accuracy_on_average'])} | {row['held_out_majority_share']:.3f} |")
    for row in control:
        print(f"| {row['parties'][0]}, its copy tuned on {row['parties'][1]}'s share ({row['steps']} steps) | "
              f"{row['weight_cosine']:.3f} | | {row['cka']:.3f} | {row['cka_with_average']:.3f} | "
              f"{_cell(row['probe_accuracy'])} | {_cell(row['probe_accuracy_on_average'])} | "
              f"{row['held_out_majority_share']:.3f} |")
    if args.output:
        Path(args.output).write_text(json.dumps(figures, indent=2) + "\n")


if __name__ == "__main__":
    main()
