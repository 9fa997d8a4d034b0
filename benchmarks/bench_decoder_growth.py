"""What growth buys a decoder: a grown Llama against the same Llama trained from random initialisation.

The claim of LiGO (and of bert2BERT, MSG, HyperCloning, G_stack) is that a target started from a smaller
trained model reaches a given loss in fewer steps than the same target started from scratch. Measured here,
for each seed, on the same data, the same tokens in the same order and the same learning-rate schedule:

* **scratch**: the target from random initialisation, ``steps`` steps of AdamW; the schedule warms up
  linearly for ``operator_steps`` steps, then decays by a cosine to a tenth of its peak at ``steps``;
* **grown**: the source grown into the target by LiGO (``fedgrow_hf.experiment.models.grow_causal_lm``,
  lossless: it starts at the source's loss), its operator trained alone for the ``operator_steps`` steps the
  scratch model warms up in (constant ``operator_learning_rate``), then merged and trained in full for the
  remaining steps at the scratch model's learning rate of each step (``fedgrow_hf.recipe.operator_then_model``);
* **source**: the source itself trained on for the same steps, at the same rates: what the extra steps
  would have bought without growing.

Batch ``i`` of every arm is positions ``i * batch ...`` of one seeded stream of the training blocks
(``fedgrow_hf.experiment.stream.StreamSampler``). All arms are evaluated on the same held-out blocks every
``eval_every`` steps. Reported per seed and as mean and sample std over seeds: the scratch model's final
validation loss, the first evaluated step at which the grown model is at or below it, that step as a
fraction of ``steps``, and the same in training FLOPs, counted with ``torch.utils.flop_counter`` on one
step of each model (forward and backward; an operator step includes growing the weights); the source's
pretraining FLOPs are given beside them, not added (the source exists already, as a user's checkpoint).

The source is a Llama trained from scratch on the training text (``fedgrow_hf.decoder_sources``, cached by its
recipe), the tokenizer a byte-level BPE learnt from it; the data is AG News (CPU) or TinyStories (GPU):

    python benchmarks/bench_decoder_growth.py --smoke                                # seconds: the pipeline, toy size
    python benchmarks/bench_decoder_growth.py                                        # cpu preset: <= 1 h on 2 cores
    python benchmarks/bench_decoder_growth.py --preset gpu --device cuda --threads 8  # GPU scale (Hub data)

``--output`` receives the curves and the figures as JSON (default ``benchmarks/results/decoder_growth/<preset>.json``);
the summary table is printed as Markdown.
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import statistics
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode
from transformers import LlamaConfig, PreTrainedModel

from fedgrow_hf.data import corpus_split_names, load_text_corpus, pack_causal_lm, pick_eval_split
from fedgrow_hf.decoder_sources import corpus_tokenizer, decoder_config, pretrain_causal_lm_source
from fedgrow_hf.experiment.models import grow_causal_lm
from fedgrow_hf.experiment.stream import StreamSampler
from fedgrow_hf.recipe import operator_then_model

ROOT = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class Scale:
    """One size of the benchmark: data, tokenizer, source, target and the training schedule."""

    data: str
    text_column: str
    train_documents: int | None
    eval_documents: int
    vocab_size: int
    block: int
    batch: int
    source: dict[str, int]
    target: dict[str, int]
    source_epochs: int
    source_learning_rate: float
    steps: int
    operator_steps: int
    learning_rate: float
    operator_learning_rate: float
    eval_every: int
    seeds: tuple[int, ...] = (0, 1, 2)
    weight_decay: float = 0.01
    extra: dict[str, int | bool] = field(default_factory=lambda: {"tie_word_embeddings": True})

    def __post_init__(self) -> None:
        if not 0 < self.operator_steps < self.steps:
            raise ValueError(f"operator_steps ({self.operator_steps}) must be between 0 and steps ({self.steps})")


PRESETS = {
    # 2 CPU cores, <= 1 hour: a 1.0M-parameter Llama (L4-H128, heads of 32 on 2 key/value heads) grown from a
    # 0.23M one (L2-H64), 1,000 steps of 16 blocks of 64 tokens (~1M tokens, 1.6 passes over AG News' train).
    # The source is trained one epoch: trained two, it was already below the scratch target's final loss
    # (seed 0: 4.239 against 4.250), so the grown model "reached" scratch at step 0 and the fraction said nothing.
    "cpu": Scale(
        data=str(ROOT.parent / "shared" / "data" / "agnews"), text_column="sentence", train_documents=None,
        eval_documents=500, vocab_size=2048, block=64, batch=16,
        source={"num_hidden_layers": 2, "hidden_size": 64, "num_attention_heads": 2, "num_key_value_heads": 1,
                "intermediate_size": 192},
        target={"num_hidden_layers": 4, "hidden_size": 128, "num_attention_heads": 4, "num_key_value_heads": 2,
                "intermediate_size": 384},
        source_epochs=1, source_learning_rate=3e-3, steps=1000, operator_steps=50, learning_rate=1e-3,
        operator_learning_rate=3e-3, eval_every=50,
    ),
    # one GPU: a GPT-2-small-sized Llama (L12-H768, 12 heads of 64 on 4 key/value heads) grown from an L6-H384 one,
    # 10,000 steps of 64 blocks of 256 tokens (~164M tokens of TinyStories, from the Hub)
    "gpu": Scale(
        data="roneneldan/TinyStories", text_column="text", train_documents=1_000_000, eval_documents=2000,
        vocab_size=8192, block=256, batch=64,
        source={"num_hidden_layers": 6, "hidden_size": 384, "num_attention_heads": 6, "num_key_value_heads": 2,
                "intermediate_size": 1024},
        target={"num_hidden_layers": 12, "hidden_size": 768, "num_attention_heads": 12, "num_key_value_heads": 4,
                "intermediate_size": 2048},
        source_epochs=1, source_learning_rate=1e-3, steps=10_000, operator_steps=200, learning_rate=6e-4,
        operator_learning_rate=1e-3, eval_every=250,
    ),
    # the whole pipeline in seconds, for tests and smoke runs: figures meaningless
    "smoke": Scale(
        data=str(ROOT.parent / "shared" / "data" / "agnews"), text_column="sentence", train_documents=300,
        eval_documents=40, vocab_size=300, block=16, batch=4,
        source={"num_hidden_layers": 1, "hidden_size": 16, "num_attention_heads": 2, "num_key_value_heads": 1,
                "intermediate_size": 32},
        target={"num_hidden_layers": 2, "hidden_size": 32, "num_attention_heads": 4, "num_key_value_heads": 2,
                "intermediate_size": 64},
        source_epochs=1, source_learning_rate=3e-3, steps=12, operator_steps=4, learning_rate=1e-3,
        operator_learning_rate=3e-3, eval_every=4, seeds=(0,),
    ),
}


@dataclass
class Prepared:
    """What every seed shares: the tokenised blocks, the source and the target's config."""

    train: object
    evaluation: object
    source: PreTrainedModel
    target: LlamaConfig
    source_flops: int


def prepare(scale: Scale, cache_dir: Path) -> Prepared:
    """The corpus, its tokenizer and the source (both cached by recipe), the blocks, the target's config."""
    documents = load_text_corpus(scale.data, "train", text_column=scale.text_column, limit=scale.train_documents)
    eval_split = pick_eval_split(corpus_split_names(scale.data), "train")
    if eval_split is None:
        raise ValueError(f"{scale.data} has no test/validation/dev split to evaluate on")
    held_out = load_text_corpus(scale.data, eval_split, text_column=scale.text_column, limit=scale.eval_documents)
    tokenizer = corpus_tokenizer(documents["text"], vocab_size=scale.vocab_size, cache_dir=cache_dir)
    train, evaluation = (pack_causal_lm(rows, tokenizer, scale.block) for rows in (documents, held_out))
    shape = {"max_position_embeddings": scale.block, **scale.extra}
    source_config = decoder_config(LlamaConfig, tokenizer, **scale.source, **shape)
    source = pretrain_causal_lm_source(
        source_config, train, tokenizer=tokenizer, epochs=scale.source_epochs, batch_size=scale.batch,
        learning_rate=scale.source_learning_rate, cache_dir=cache_dir)
    steps = scale.source_epochs * math.ceil(len(train) / scale.batch)
    source_flops = steps * training_step_flops(copy.deepcopy(source).train(), train[: scale.batch])
    return Prepared(train, evaluation, source, decoder_config(LlamaConfig, tokenizer, **scale.target, **shape),
                    source_flops)


def training_step_flops(model: torch.nn.Module, batch: dict[str, torch.Tensor]) -> int:
    """FLOPs of one training step's forward and backward (the optimizer's update left out), counted."""
    with FlopCounterMode(display=False) as counter:
        model(input_ids=batch["input_ids"], labels=batch["labels"]).loss.backward()
    model.zero_grad(set_to_none=True)
    return counter.get_total_flops()


def learning_rate(scale: Scale, step: int) -> float:
    """The scratch schedule at ``step`` (0-based): linear warm-up over the operator phase, cosine to 10%."""
    if step < scale.operator_steps:
        return scale.learning_rate * (step + 1) / scale.operator_steps
    progress = (step - scale.operator_steps) / max(1, scale.steps - scale.operator_steps)
    return scale.learning_rate * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress)))


class Arm:
    """One model's training on the seed's stream of batches, evaluated every ``eval_every`` steps."""

    def __init__(self, scale: Scale, prepared: Prepared, seed: int, device: torch.device) -> None:
        self.scale, self.prepared, self.device = scale, prepared, device
        sampler = StreamSampler(len(prepared.train), seed, 0, scale.steps * scale.batch)
        self.order = list(sampler)
        self.curve: list[tuple[int, float]] = []
        self.flops: dict[str, int] = {}
        self.seconds = 0.0

    def batch(self, step: int) -> dict[str, torch.Tensor]:
        rows = self.prepared.train[self.order[step * self.scale.batch:(step + 1) * self.scale.batch]]
        return {name: rows[name].to(self.device) for name in ("input_ids", "labels")}

    def evaluate(self, model: torch.nn.Module, step: int) -> None:
        model.eval()
        losses, count = 0.0, 0
        with torch.no_grad():
            for start in range(0, len(self.prepared.evaluation), 4 * self.scale.batch):
                rows = self.prepared.evaluation[start:start + 4 * self.scale.batch]
                ids = rows["input_ids"].to(self.device)
                losses += float(model(input_ids=ids, labels=rows["labels"].to(self.device)).loss) * len(ids)
                count += len(ids)
        self.curve.append((step, losses / count))
        model.train()

    def train(self, model: torch.nn.Module, first: int, last: int, rate: Callable[[int], float], kind: str) -> None:
        """Steps ``first .. last - 1`` at ``rate(step)``, AdamW over the trainable parameters; FLOPs counted once."""
        parameters = [p for p in model.parameters() if p.requires_grad]
        optimizer = torch.optim.AdamW(parameters, lr=rate(first), weight_decay=self.scale.weight_decay)
        model.train()
        if kind not in self.flops:
            self.flops[kind] = training_step_flops(model, self.batch(first))
        if not self.curve:
            self.evaluate(model, 0)
        for step in range(first, last):
            for group in optimizer.param_groups:
                group["lr"] = rate(step)
            batch = self.batch(step)
            loss = model(input_ids=batch["input_ids"], labels=batch["labels"]).loss
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(parameters, 1.0)
            optimizer.step()
            if (step + 1) % self.scale.eval_every == 0 or step + 1 == self.scale.steps:
                self.evaluate(model, step + 1)


def run_seed(scale: Scale, prepared: Prepared, seed: int, device: torch.device) -> dict[str, dict]:
    """The three arms of one seed: their curves and per-step FLOPs."""
    schedule = lambda step: learning_rate(scale, step)  # noqa: E731
    arms = {name: Arm(scale, prepared, seed, device) for name in ("scratch", "grown", "source")}
    started = time.monotonic()
    torch.manual_seed(seed)
    arms["scratch"].train(type(prepared.source)(prepared.target).to(device), 0, scale.steps, schedule, "step")
    arms["scratch"].seconds = time.monotonic() - started

    grown = arms["grown"]
    operator = grow_causal_lm(copy.deepcopy(prepared.source), prepared.target, seed=seed).to(device)
    operator_then_model(
        operator,
        lambda model: grown.train(model, 0, scale.operator_steps, lambda step: scale.operator_learning_rate,
                                  "operator_step"),
        lambda merged: grown.train(merged, scale.operator_steps, scale.steps, schedule, "step"),
    )
    grown.seconds = time.monotonic() - started - arms["scratch"].seconds
    arms["source"].train(copy.deepcopy(prepared.source).to(device), 0, scale.steps, schedule, "step")
    arms["source"].seconds = time.monotonic() - started - arms["scratch"].seconds - grown.seconds
    return {name: {"curve": arm.curve, "flops_per_step": arm.flops, "seconds": round(arm.seconds, 1)}
            for name, arm in arms.items()}


def reach(result: dict[str, dict], scale: Scale) -> dict[str, float | int | None]:
    """When the grown model first reaches the scratch model's final validation loss: step, fraction, FLOPs."""
    target = result["scratch"]["curve"][-1][1]
    grown = result["grown"]
    # step 0 where the source (the grown model's lossless start) is already as good: growth then needs no step
    step = next((s for s, loss in grown["curve"] if loss <= target), None)
    scratch_flops = scale.steps * result["scratch"]["flops_per_step"]["step"]
    summary: dict[str, float | int | None] = {
        "scratch_final_loss": target, "grown_final_loss": grown["curve"][-1][1],
        "source_final_loss": result["source"]["curve"][-1][1], "grown_start_loss": grown["curve"][0][1],
        "steps_to_reach": step, "step_fraction": None, "flop_fraction": None,
    }
    if step is not None:
        operator = min(step, scale.operator_steps)
        flops = (operator * grown["flops_per_step"]["operator_step"]
                 + (step - operator) * grown["flops_per_step"].get("step", 0))
        summary.update(step_fraction=step / scale.steps, flop_fraction=flops / scratch_flops)
    return summary


def mean_std(values: list[float | None]) -> str:
    known = [value for value in values if value is not None]
    if len(known) < len(values):
        return f"not reached in {len(values) - len(known)} of {len(values)} seeds"
    return f"{statistics.mean(known):.3f}" + (f" ± {statistics.stdev(known):.3f}" if len(known) > 1 else "")


def table(summaries: list[dict], prepared: Prepared, scale: Scale) -> str:
    rows = [("grown: fraction of scratch's steps to reach its final val loss", "step_fraction"),
            ("grown: fraction of scratch's FLOPs to reach it", "flop_fraction"),
            ("scratch: final val loss", "scratch_final_loss"), ("grown: final val loss", "grown_final_loss"),
            ("source trained on: final val loss", "source_final_loss"),
            ("grown: val loss at step 0 (the source's)", "grown_start_loss")]
    lines = ["| figure | mean ± std over seeds |", "|---|---|"]
    lines += [f"| {label} | {mean_std([s[key] for s in summaries])} |" for label, key in rows]
    lines.append(f"| source pretraining FLOPs / scratch's | {prepared.source_flops / summaries[0]['scratch_flops']:.3f} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--preset", choices=sorted(PRESETS), default="cpu")
    parser.add_argument("--smoke", action="store_true", help="the smoke preset: seconds, figures meaningless")
    parser.add_argument("--seeds", help="comma-separated seeds (default: the preset's, 0,1,2)")
    parser.add_argument("--steps", type=int, help="override the preset's training steps (timing probes)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads (default: %(default)s)")
    parser.add_argument("--cache-dir", default=str(Path.home() / ".cache" / "fedgrow-hf" / "sources"),
                        help="where the tokenizer and the source are cached by recipe")
    parser.add_argument("--output", help="results JSON (default: benchmarks/results/decoder_growth/<preset>.json)")
    args = parser.parse_args()
    name = "smoke" if args.smoke else args.preset
    scale = PRESETS[name]
    if args.seeds:
        scale = replace(scale, seeds=tuple(int(seed) for seed in args.seeds.split(",")))
    if args.steps:  # a shorter run keeps the operator phase's share of it
        scale = replace(scale, steps=args.steps, eval_every=min(scale.eval_every, args.steps),
                        operator_steps=max(1, scale.operator_steps * args.steps // scale.steps))
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    started = time.monotonic()
    prepared = prepare(scale, Path(args.cache_dir).expanduser())
    print(f"{len(prepared.train):,} training and {len(prepared.evaluation):,} validation blocks of {scale.block} "
          f"tokens; prepared in {time.monotonic() - started:.0f} s")
    results, summaries = {}, []
    for seed in scale.seeds:
        results[seed] = run_seed(scale, prepared, seed, device)
        summary = reach(results[seed], scale)
        summary["scratch_flops"] = scale.steps * results[seed]["scratch"]["flops_per_step"]["step"]
        summaries.append(summary)
        print(f"seed {seed}: {json.dumps(summary)} ({time.monotonic() - started:.0f} s)")
    report = table(summaries, prepared, scale)
    print(report)
    output = Path(args.output or ROOT / "benchmarks" / "results" / "decoder_growth" / f"{name}.json")
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps({
        "kind": "bench_decoder_growth", "preset": name, "scale": asdict(scale), "device": str(device),
        "threads": args.threads, "seconds": round(time.monotonic() - started, 1),
        "source_pretraining_flops": prepared.source_flops, "summaries": summaries,
        "runs": {str(seed): result for seed, result in results.items()}, "table": report,
    }, indent=1))
    print(f"written to {output}")


if __name__ == "__main__":
    main()
