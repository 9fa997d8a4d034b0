"""Peak memory of the whole merge -- adapter directory in, model directory on disk -- four ways.

Grows the real all-MiniLM-L6-v2 (BERT L6-H384) into BERT L12-H768 for sequence classification, saves
the adapter, then merges it in a fresh subprocess per approach (so each peak RSS is its own):

* ``fedgrow merge``: ``fedgrow_hf.export.export_merged`` without a device map -- every grown block is
  written as its own shard and dropped (``write_merged``); the target is never held;
* ``fedgrow merge --device-map cpu``: the target built in place block by block (``merge_adapter``) on
  a meta skeleton, then ``save_pretrained``;
* ``PeftModel merge_and_unload``: a fully allocated target + ``PeftModel.from_pretrained`` +
  ``merge_and_unload()`` + ``save_pretrained``;
* ``truly naive``: the operator's whole grown copy and a fully allocated target side by side, copied
  across, then ``save_pretrained`` -- what merging costs without any of the above.

Peak RSS (``resource.getrusage``) is reported above the process's RSS after its imports (the
interpreter, torch, transformers and fedgrow_hf, the same for every approach), next to the target's
parameter bytes.

    python benchmarks/bench_memory.py [--dtype float32|bfloat16]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
from pathlib import Path

MiB = 2**20
TARGET = {"num_hidden_layers": 12, "hidden_size": 768, "num_attention_heads": 12, "intermediate_size": 3072}


def _peak_rss_bytes() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux reports KiB


def make_adapter(adapter_dir: str) -> None:
    from transformers import AutoConfig, BertForSequenceClassification

    import fedgrow_hf
    from fedgrow_hf.sources import minilm_path

    source = minilm_path()
    target_config = AutoConfig.from_pretrained(source)
    target_config.update({**TARGET, "num_labels": 2})
    model = fedgrow_hf.grow(
        str(source),
        target_config,
        model_class=BertForSequenceClassification,
        task_type="SEQ_CLS",
        modules_to_save=["classifier"],
        record_source_paths=True,  # the merging subprocesses load the source from where this one found it
    )
    model.save_pretrained(adapter_dir)


APPROACHES = ("fedgrow merge", "fedgrow merge --device-map cpu", "PeftModel merge_and_unload", "truly naive")


def merge(approach: str, adapter_dir: str, output_dir: str, dtype: str) -> dict:
    import gc

    import torch
    from accelerate import init_empty_weights
    from peft import PeftModel
    from transformers import AutoModelForSequenceClassification

    from fedgrow_hf.export import (
        _GrowthPlan,
        export_merged,
        load_grown,
        read_ligo_config,
        resolve_dtype,
        target_config_of,
    )

    config = target_config_of(read_ligo_config(adapter_dir))
    with init_empty_weights():
        target_bytes = sum(p.numel() for p in AutoModelForSequenceClassification.from_config(config).parameters())
    target_bytes *= resolve_dtype(dtype).itemsize
    gc.collect()
    baseline = _peak_rss_bytes()
    if approach == "fedgrow merge":
        export_merged(adapter_dir, output_dir, dtype=dtype)
    elif approach == "fedgrow merge --device-map cpu":
        export_merged(adapter_dir, output_dir, dtype=dtype, device_map="cpu")
    elif approach == "PeftModel merge_and_unload":
        target = AutoModelForSequenceClassification.from_config(config)
        model = PeftModel.from_pretrained(target, adapter_dir).merge_and_unload().to(resolve_dtype(dtype))
        model.save_pretrained(output_dir)
    else:  # truly naive
        plan = _GrowthPlan.of(load_grown(adapter_dir))
        gc.collect()
        with torch.no_grad():
            weights = plan.operator()  # the whole grown copy
            model = plan.model_class(plan.config)  # an allocated target beside it
            for tensor in plan.grown:
                value = weights.shared[tensor.path] if tensor.kind == "shared" else weights.layers[tensor.path][tensor.layer]
                model.get_parameter(tensor.names[0]).copy_(value)
            model.load_state_dict(plan.own_state, strict=False)
        model.to(resolve_dtype(dtype)).save_pretrained(output_dir)
    return {"approach": approach, "baseline": baseline, "peak": _peak_rss_bytes(), "target_bytes": target_bytes}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"])
    parser.add_argument("--child", nargs=3, metavar=("APPROACH", "ADAPTER_DIR", "OUTPUT_DIR"), help=argparse.SUPPRESS)
    parser.add_argument("--setup", metavar="ADAPTER_DIR", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.setup:
        make_adapter(args.setup)
        return
    if args.child:
        print(json.dumps(merge(*args.child, args.dtype)))
        return
    with tempfile.TemporaryDirectory() as tmp:
        adapter_dir = str(Path(tmp) / "adapter")
        subprocess.run([sys.executable, __file__, "--setup", adapter_dir], check=True)
        rows = []
        for number, approach in enumerate(APPROACHES):
            output_dir = str(Path(tmp) / f"merged-{number}")
            result = subprocess.run(
                [sys.executable, __file__, "--dtype", args.dtype, "--child", approach, adapter_dir, output_dir],
                check=True,
                capture_output=True,
                text=True,
            )
            rows.append(json.loads(result.stdout.strip().splitlines()[-1]))
    print(f"MiniLM (L6-H384) -> BERT L12-H768 seq-cls, dtype {args.dtype}, adapter directory -> model directory")
    print(
        "| approach | target params (MiB) | peak RSS (MiB) | RSS after imports (MiB) | peak above imports (MiB) "
        "| peak above imports / target |"
    )
    print("|---|---|---|---|---|---|")
    for row in rows:
        above = row["peak"] - row["baseline"]
        print(
            f"| {row['approach']} | {row['target_bytes'] / MiB:.0f} | {row['peak'] / MiB:.0f} | "
            f"{row['baseline'] / MiB:.0f} | {above / MiB:.0f} | {above / row['target_bytes']:.2f}x |"
        )

if __name__ == "__main__":
    main()
