"""``fedgrow merge ADAPTER_DIR OUTPUT_DIR``: a LiGO adapter becomes a plain transformers model directory.

Without ``--device-map`` each grown block is written as its own shard and dropped
(``fedgrow_hf.export.write_merged``), so merging never holds the target; with ``--device-map`` /
``--offload-folder`` the target is built block by block across devices/disk, then saved.
"""

from __future__ import annotations

import argparse

from ..export import AUTO_DEVICE_MAPS, DTYPES, export_merged


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("adapter_dir", help="LiGO adapter directory (or Hub id), e.g. the ligo_adapter/ of `fedgrow grow`")
    parser.add_argument("output_dir", help="where to write the merged model (config, weights, tokenizer)")
    parser.add_argument(
        "--source",
        action="append",
        help="location (local dir or Hub id) of a source the adapter names; repeat in order for several. "
        "Needed for local sources: an adapter records only their names unless grown with --record-local-paths",
    )
    parser.add_argument("--dtype", choices=sorted(DTYPES), default=None, help="dtype of the written weights")
    parser.add_argument(
        "--device-map",
        default=None,
        help=f"a device (cpu, cuda:0) or one of {', '.join(AUTO_DEVICE_MAPS)} to spread the target over devices",
    )
    parser.add_argument(
        "--max-memory",
        default=None,
        help="per-device budget for an automatic --device-map, e.g. '0=20GiB,cpu=40GiB'",
    )
    parser.add_argument(
        "--offload-folder", default=None, help="folder for modules the device map puts on disk"
    )


def parse_max_memory(text: str | None) -> dict[int | str, str] | None:
    """``'0=20GiB,cpu=40GiB'`` -> ``{0: '20GiB', 'cpu': '40GiB'}`` (accelerate's max_memory)."""
    if not text:
        return None
    budget: dict[int | str, str] = {}
    for item in text.split(","):
        device, sep, amount = item.partition("=")
        if not sep or not amount.strip():
            raise ValueError(f"--max-memory entry {item!r} is not DEVICE=AMOUNT (e.g. cpu=40GiB)")
        device = device.strip()
        budget[int(device) if device.isdigit() else device] = amount.strip()
    return budget


def run(args: argparse.Namespace) -> int:
    export_merged(
        args.adapter_dir,
        args.output_dir,
        sources=args.source,
        dtype=args.dtype,
        device_map=args.device_map,
        max_memory=parse_max_memory(args.max_memory),
        offload_folder=args.offload_folder,
        progressbar=True,
    )
    print(f"merged model written to {args.output_dir}")
    return 0
