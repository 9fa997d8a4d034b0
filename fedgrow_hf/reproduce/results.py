"""The ``results.json`` of a comparison: its kinds, and the comparisons one file holds.

``RESULTS.md`` is regenerated from these files alone (:mod:`.results_markdown`), so it never drifts from them.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

RESULTS_FILE = "results.json"
RESULTS_KIND = "fedgrow reproduce"  # marks a comparison's results.json among other benchmarks' results
PARTITIONED_KIND = "fedgrow reproduce, partitions"  # one comparison per data partition (paper-agnews)


def comparisons_of(results: dict[str, Any], output_dir: Path) -> list[tuple[Path, dict[str, Any]]]:
    """Each comparison a ``results.json`` holds, with the folder its plots go to: itself, or one per partition
    (``output_dir/<partition>``)."""
    if results.get("kind") != PARTITIONED_KIND:
        return [(output_dir, results)]
    return [(output_dir / name, comparison) for name, comparison in results["partitions"].items()]


def write_results(output_dir: Path, results: dict[str, Any]) -> Path:
    """Write ``output_dir/results.json``."""
    output_dir.mkdir(parents=True, exist_ok=True)
    path = output_dir / RESULTS_FILE
    path.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    return path
