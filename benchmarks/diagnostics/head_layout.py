"""What `width_structure="head_groups"` costs in quality, where the target has fewer, wider heads.

MiniLM (12 heads of 32) -> BERT L8/H512 (8 heads of 64), `bench_operator.py`'s pair, is such a growth: no target
head can hold one source head alone next to the others, so `head_kronecker` (the default) grows the
query/key/value spaces with full 512 x 384 factors per target block, and `head_groups` with Kronecker factors
over pairs of source heads side by side: 8 x 6 head maps and 64 x 64 unit maps, 11x fewer operator parameters in
all and a fifth less arithmetic per training step. Both start from the same grown weights; they differ in what
the operator can learn.

    python benchmarks/diagnostics/head_layout.py --output benchmarks/diagnostics/head_layout.json

For each structure, seed and rate it trains the operator (and the fresh classifier) on SST-2's first `--train`
training sentences, `--steps` AdamW steps of `--batch`, and reports the held-out loss and accuracy (SST-2's dev
file, first `--eval` sentences) every `--every` steps, the operator's trainable parameters, and how far the grown
encoder's start is from MiniLM's function: the relative error of its last hidden states (the first 384 of 512
features, the ones that copy the source's) against MiniLM's on the held-out sentences. The seed sets the fresh
classifier (the batches are in file order), so seeds pair across structures.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
import time
from pathlib import Path

import torch
from transformers import AutoModel, AutoTokenizer, BertConfig, BertForSequenceClassification

from fedgrow_hf import grow
from fedgrow_hf.sources import minilm_path

SST2 = Path(__file__).resolve().parents[3] / "shared" / "data" / "sst2"  # beside the checkout, as in CI


def sentences(path: Path, limit: int) -> tuple[list[str], torch.Tensor]:
    with path.open(encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle, delimiter="\t", quoting=csv.QUOTE_NONE))[:limit]
    return [row["sentence"] for row in rows], torch.tensor([int(row["label"]) for row in rows])


def target_config(source: BertConfig) -> BertConfig:
    return BertConfig(vocab_size=source.vocab_size, num_hidden_layers=8, hidden_size=512, num_attention_heads=8,
                      intermediate_size=2048, max_position_embeddings=source.max_position_embeddings, num_labels=2)


@torch.no_grad()
def evaluate(model: torch.nn.Module, batches: list[dict[str, torch.Tensor]]) -> dict[str, float]:
    model.eval()
    losses, correct, count = [], 0, 0
    for batch in batches:
        output = model(**batch)
        losses.append(output.loss.item() * len(batch["labels"]))
        correct += (output.logits.argmax(-1) == batch["labels"]).sum().item()
        count += len(batch["labels"])
    model.train()
    return {"loss": sum(losses) / count, "accuracy": correct / count}


@torch.no_grad()
def start_error(model: torch.nn.Module, source: torch.nn.Module, batches: list[dict[str, torch.Tensor]]) -> float:
    """Relative error of the grown encoder's last hidden states (the features that copy the source's) against
    the source's, over every held-out token."""
    model.eval()
    error, norm = 0.0, 0.0
    for batch in batches:
        inputs = {key: value for key, value in batch.items() if key != "labels"}
        grown = model(**inputs, output_hidden_states=True).hidden_states[-1][..., :source.config.hidden_size]
        ours = source(**inputs).last_hidden_state
        mask = inputs["attention_mask"].unsqueeze(-1)
        error += ((grown - ours) * mask).square().sum().item()
        norm += (ours * mask).square().sum().item()
    model.train()
    return (error / norm) ** 0.5


def run(args: argparse.Namespace) -> dict:
    tokenizer = AutoTokenizer.from_pretrained(minilm_path())
    source = AutoModel.from_pretrained(minilm_path()).eval()

    def batches(texts: list[str], labels: torch.Tensor) -> list[dict[str, torch.Tensor]]:
        out = []
        for start in range(0, len(texts), args.batch):
            encoded = tokenizer(texts[start:start + args.batch], padding="max_length", truncation=True,
                                max_length=args.length, return_tensors="pt")
            out.append({**encoded, "labels": labels[start:start + args.batch]})
        return out

    train = batches(*sentences(args.data / "train.tsv", args.train))
    held_out = batches(*sentences(args.data / "dev.tsv", args.eval))
    results = {"command": "python benchmarks/diagnostics/head_layout.py " + " ".join(sys.argv[1:]), "structures": {}}
    for structure in args.width_structures:
        measured = results["structures"][structure] = {"runs": []}
        for seed in args.seeds:
            for rate in args.rates:
                torch.manual_seed(seed)
                model = grow(source, target_config(source.config), model_class=BertForSequenceClassification,
                             modules_to_save=["classifier"], width_structure=structure)
                trainable = [param for param in model.parameters() if param.requires_grad]
                measured["trainable_parameters"] = sum(param.numel() for param in trainable)
                measured["start_relative_error"] = start_error(model, source, held_out)
                curve, seconds = train_operator(model, trainable, rate, train, held_out, args)
                measured["runs"].append({"seed": seed, "rate": rate, "curve": curve, "seconds": seconds})
                print(json.dumps({"structure": structure, "seed": seed, "rate": rate, **curve[-1]}), flush=True)
    return results


def train_operator(model: torch.nn.Module, trainable: list[torch.nn.Parameter], rate: float,
                   train: list[dict[str, torch.Tensor]], held_out: list[dict[str, torch.Tensor]],
                   args: argparse.Namespace) -> tuple[list[dict[str, float]], float]:
    """``args.steps`` AdamW steps at ``rate`` over ``train`` in order; the held-out curve and the seconds."""
    optimizer = torch.optim.AdamW(trainable, lr=rate)
    curve, started = [{"step": 0, **evaluate(model, held_out)}], time.perf_counter()
    for step in range(1, args.steps + 1):
        model(**train[(step - 1) % len(train)]).loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        if step % args.every == 0:
            curve.append({"step": step, **evaluate(model, held_out)})
    return curve, round(time.perf_counter() - started, 1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--width-structures", nargs="+", default=["head_kronecker", "head_groups"])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--rates", type=float, nargs="+", default=[1e-2])
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--every", type=int, default=25)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--length", type=int, default=64)
    parser.add_argument("--train", type=int, default=1600)
    parser.add_argument("--eval", type=int, default=800)
    parser.add_argument("--data", type=Path, default=SST2, help="a folder with SST-2's train.tsv and dev.tsv")
    parser.add_argument("--output", type=Path)
    args = parser.parse_args()
    results = run(args)
    text = json.dumps(results, indent=1)
    if args.output:
        args.output.write_text(text + "\n", encoding="utf-8")
    print(text)


if __name__ == "__main__":
    main()
