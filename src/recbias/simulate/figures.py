"""Figures of a simulation run (matplotlib, Agg backend, PNG).

plot_rounds(runs, run_dir / "concentration.png")   # one line per (variant, λ)
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from recbias.fsutil import atomic_path

PANELS = (
    ("exposure_hhi", "HHI of exposure (Σ share²)"),
    ("exposure_gini", "Gini of exposure"),
    ("exposure_coverage", "Catalog coverage of exposure"),
    ("consumption_hhi", "HHI of consumption"),
    ("jaccard", "Jaccard homogenisation of slates"),
    ("drift_mean", "Mean user drift (TV distance)"),
)


def _label(run: dict[str, Any], several_variants: bool) -> str:
    lam = f"λ = {run['lambda']:g}"
    return f"{run['variant']}, {lam}" if several_variants else lam


def plot_rounds(runs: list[dict[str, Any]], path: Path) -> None:
    """Six panels of per-round metrics; written atomically as PNG."""
    several = len({r["variant"] for r in runs}) > 1
    fig, axes = plt.subplots(2, 3, figsize=(13, 7), constrained_layout=True)
    for ax, (key, title) in zip(axes.flat, PANELS, strict=True):
        for run in runs:
            rounds = [row["round"] for row in run["rounds"]]
            values = [row[key] if row[key] is not None else float("nan") for row in run["rounds"]]
            ax.plot(rounds, values, marker=".", label=_label(run, several))
        ax.set_title(title, fontsize=10)
        ax.set_xlabel("round")
        ax.grid(alpha=0.3)
    axes.flat[0].legend(fontsize=8)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    plt.close(fig)
