"""One party's cost per training step under each method of a comparison: the resource claim of the Fed-Grow
paper (a constrained party trains only the operator, never the large model).

For each method, in a fresh process (so one method's memory never counts for another): the model a party of
that method trains (Fed-Grow's Dual-LiGO with the head-Kronecker or the dense operator, Fed-Scratch's full
target, own-source's source classifier), AdamW over its trainable parameters, gradient clipping as the
Trainer does, one batch of the preset's real data at its batch size and sequence length. One warm-up step
(after it the optimizer state exists), then ``--steps`` timed steps; the peak resident memory of one step is
sampled (``rss.PeakRSS``) and reported above the process's memory before the model was built. Sources are
random, of the party's shape: their values change neither time nor memory (a ``pretrain`` source would be
trained first). Ratios are to Fed-Scratch, measured in the same run. From the repository root:

    python benchmarks/bench_party_step.py --preset paper-agnews --party 2 --steps 5 --output OUT.json
"""

from __future__ import annotations

import argparse
import copy
import json
import subprocess
import sys
import time
from pathlib import Path

import torch
from rss import PeakRSS, current_rss_bytes

from fedgrow_hf.data import trim_padding_collator
from fedgrow_hf.experiment.config import FederationConfig
from fedgrow_hf.experiment.data import party_datasets
from fedgrow_hf.experiment.models import model_classes, target_config
from fedgrow_hf.experiment.parties import build_party_model
from fedgrow_hf.experiment.training import training_options
from fedgrow_hf.reproduce.methods import method_config, own_source_model, target_parameters
from fedgrow_hf.reproduce.presets import preset_config

METHODS = ("fed-grow", "fed-grow-dense", "fed-scratch", "own-source")
RECIPE = ("epochs", "batch_size", "learning_rate", "weight_decay", "max_grad_norm", "steps", "data")


def party_config(preset: str, data_dir: str, party: int, method: str) -> FederationConfig:
    """The preset's config for ``method``, every party's source random of its own shape."""
    base = FederationConfig.from_dict(preset_config(preset, data_dir))
    for settings in base.parties:
        shape = settings.pretrain or settings.random
        if shape is None:
            raise ValueError("the benchmark builds sources from their shapes: parties need pretrain or random")
        settings_shape = {key: value for key, value in shape.items() if key not in RECIPE}
        settings.pretrain, settings.random = None, settings_shape
    base.data.tokenizer = base.data.tokenizer or "minilm"
    return method_config(copy.deepcopy(base), method, Path("/tmp"))


def party_model(config: FederationConfig, method: str, party: int) -> torch.nn.Module:
    if method == "fed-scratch":
        torch.manual_seed(config.seed)
        return model_classes(config)[1](target_config(config))
    if method == "own-source":
        return own_source_model(config, party)
    return build_party_model(config, party)


def child(args: argparse.Namespace) -> None:
    """Runs in a fresh process: prints one method's step time and step memory as JSON."""
    torch.set_num_threads(args.threads)
    config = party_config(args.preset, args.data_dir, args.party, args.child)
    options = training_options(config)
    train, _ = party_datasets(config, args.party)
    rows = [train[index] for index in range(min(len(train), options["per_device_train_batch_size"]))]
    batch = trim_padding_collator(rows)
    before_model = current_rss_bytes()
    model = party_model(config, args.child, args.party)
    model.train()
    trainable = [param for param in model.parameters() if param.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=options["learning_rate"], weight_decay=options.get("weight_decay", 0.0))

    def step() -> None:
        loss = model(**batch).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(trainable, options.get("max_grad_norm", 1.0))
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    step()
    with PeakRSS() as measured:
        step()
    started = time.perf_counter()
    for _ in range(args.steps):
        step()
    seconds = (time.perf_counter() - started) / args.steps
    print(json.dumps({"seconds_per_step": seconds, "step_peak_bytes": measured.peak - before_model,
                      "trainable_parameters": sum(param.numel() for param in trainable),
                      "batch": list(batch["input_ids"].shape)}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="paper-agnews")
    parser.add_argument("--data-dir", default="../shared/data")
    parser.add_argument("--party", type=int, default=2, help="whose source and data (paper-agnews: 2 has 4 layers)")
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=METHODS)
    parser.add_argument("--output", help="also write the figures here (JSON)")
    parser.add_argument("--child", choices=METHODS, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args)
        return
    figures = {}
    for method in args.methods:
        command = [sys.executable, __file__, "--child", method, *sys.argv[1:]]
        done = subprocess.run(command, capture_output=True, text=True, check=True)
        figures[method] = json.loads(done.stdout.strip().splitlines()[-1])
    scratch = figures.get("fed-scratch")
    target = target_parameters(party_config(args.preset, args.data_dir, args.party, "fed-scratch"))
    print("| method | trainable parameters | s / step | step peak memory (MiB above the process before the model) |"
          + (" time / Fed-Scratch | memory / Fed-Scratch |" if scratch else ""))
    print("|---|---|---|---|" + ("---|---|" if scratch else ""))
    for method, result in figures.items():
        row = (f"| {method} | {result['trainable_parameters']:,} ({result['trainable_parameters'] / target:.1%} of the "
               f"target) | {result['seconds_per_step']:.3f} | {result['step_peak_bytes'] / 2**20:.0f} |")
        if scratch:
            row += (f" {result['seconds_per_step'] / scratch['seconds_per_step']:.2f} | "
                    f"{result['step_peak_bytes'] / scratch['step_peak_bytes']:.2f} |")
        print(row)
    if args.output:
        Path(args.output).parent.mkdir(parents=True, exist_ok=True)
        Path(args.output).write_text(json.dumps({"command": " ".join(["python", *sys.argv]), "preset": args.preset,
                                                 "party": args.party, "methods": figures}, indent=2) + "\n")


if __name__ == "__main__":
    main()
