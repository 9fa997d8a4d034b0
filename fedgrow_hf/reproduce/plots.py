"""The comparison's two plots: mean held-out accuracy against local steps and against bytes sent."""

from __future__ import annotations

from pathlib import Path
from typing import Any

PLOTS = {"steps": "accuracy_vs_steps.png", "bytes": "accuracy_vs_bytes.png"}


def write_plots(output_dir: Path, results: dict[str, Any]) -> list[Path]:
    """Mean held-out accuracy across parties (averaged over seeds) against local steps per party and
    against cumulative bytes."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    paths = []
    for kind, filename in PLOTS.items():
        figure, axes = plt.subplots(figsize=(6.4, 4.2))
        for summary in results["methods"].values():
            curve = summary["curve"]
            xs = [p["steps"] if kind == "steps" else p["cumulative_bytes"] / 2**20 for p in curve]
            axes.plot(xs, [p["accuracy"] for p in curve], marker="o", markersize=6 if len(curve) <= 20 else 2.5,
                      label=summary["label"])
        axes.axhline(results["majority_class"]["held_out"]["mean"], color="gray", linestyle="--", linewidth=1,
                     label="majority class (reference)")
        if kind == "steps":
            axes.set_xlabel("local steps per party (one point per round / evaluation)")
        else:
            axes.set_xscale("symlog", linthresh=0.01)
            axes.set_xlabel("cumulative MiB sent, all parties, up + down (symlog; 0 = nothing sent)")
        axes.set_ylabel("mean held-out accuracy across parties")
        axes.set_title(f"{results['preset']}: accuracy vs {kind} (mean of {len(results['seeds'])} seeds)")
        axes.grid(alpha=0.3)
        axes.legend(fontsize=8)
        figure.tight_layout()
        path = output_dir / filename
        figure.savefig(path, dpi=110)
        plt.close(figure)
        paths.append(path)
    return paths
