"""Communication and round time of Fed-Grow (``fedgrow_hf.federated``).

1. Bytes per round per party for the text config (``examples/configs/demo-text.toml``: the real
   all-MiniLM-L6-v2 and two sources derived from it, grown into BERT L8/H512): Fed-Grow sends the
   Global-LiGO up and down; FedAvg of the full target sends the whole grown model; FedAvg of the
   whole Dual-LiGO would send Global + the party's Local-LiGO. Sizes are the serialised Flower
   ``ArrayRecord`` payloads, exactly what ``metrics.jsonl`` reports as ``bytes_up``/``bytes_down``.
2. Seconds per round with 2, 4 and 8 simulated parties (Flower simulation engine, tiny text
   config, parties' sources cycled from it). Round 1 also builds every party's model, so the
   figure is the median of rounds 2..R.

    python benchmarks/bench_comm.py --data ../shared/data/sst2
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

from fedgrow_hf.experiment.config import FederationConfig
from fedgrow_hf.experiment.models import model_classes, target_config
from fedgrow_hf.experiment.parties import build_party_model, reference_global_stage
from fedgrow_hf.federated.strategy import payload_bytes, to_array_record

CONFIGS = Path(__file__).resolve().parents[1] / "examples" / "configs"


def communication(config: FederationConfig) -> list[dict]:
    """Bytes one party sends + receives per round under each scheme."""
    global_bytes = payload_bytes(to_array_record(reference_global_stage(config).state_dict()))
    _, model_class = model_classes(config)
    full_bytes = payload_bytes(to_array_record(model_class(target_config(config)).state_dict()))
    rows = []
    for party in range(config.num_parties):
        model = build_party_model(config, party)
        local_bytes = payload_bytes(to_array_record(model.local_state_dict()))
        source = model.base_model.operator.sources[0].shape
        rows.append({
            "party": party,
            "source": f"L{source.num_layers}/H{source.hidden}",
            "fedgrow_bytes": 2 * global_bytes,
            "full_fedavg_bytes": 2 * full_bytes,
            "dual_ligo_fedavg_bytes": 2 * (global_bytes + local_bytes),
            "fedgrow_over_full": global_bytes / full_bytes,
        })
    return rows


def round_seconds(data: str, parties: int, rounds: int) -> float:
    from fedgrow_hf.federated.simulate import simulate

    config = FederationConfig.load(CONFIGS / "demo-tiny.toml")
    config.data.source = data
    config.data.limit = 100 * parties
    config.parties = [config.parties[i % len(config.parties)] for i in range(parties)]
    config.federation.rounds, config.federation.phase2 = rounds, "none"
    config.validate()
    reports: list[dict] = []
    with tempfile.TemporaryDirectory() as run_dir:
        simulate(config, run_dir, on_round=reports.append)
    return statistics.median(r["seconds"] for r in reports[1:])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True, help="SST-2 folder (e.g. ../shared/data/sst2)")
    parser.add_argument("--parties", type=int, nargs="+", default=[2, 4, 8])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--output", help="also write the figures to this JSON file")
    args = parser.parse_args()

    text = FederationConfig.load(CONFIGS / "demo-text.toml")
    rows = communication(text)
    print("| party | source | Fed-Grow | FedAvg full target | FedAvg whole Dual-LiGO | Fed-Grow / full |")
    print("|---|---|---|---|---|---|")
    for row in rows:
        print(f"| {row['party']} | {row['source']} | {row['fedgrow_bytes']:,} | {row['full_fedavg_bytes']:,} | "
              f"{row['dual_ligo_fedavg_bytes']:,} | {row['fedgrow_over_full']:.2%} |")

    timings = []
    for parties in args.parties:
        started = time.monotonic()
        seconds = round_seconds(args.data, parties, args.rounds)
        timings.append({"parties": parties, "seconds_per_round": seconds, "wall": time.monotonic() - started})
        print(f"| {parties} parties | {seconds:.2f} s / round (median of rounds 2..{args.rounds}) |")
    if args.output:
        Path(args.output).write_text(json.dumps({"communication": rows, "timing": timings}, indent=2))


if __name__ == "__main__":
    main()
