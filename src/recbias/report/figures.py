"""Report figures drawn with matplotlib (Agg backend), saved as PNG.

Example::

    forest_plot([Interval("sft", 0.0137, 0.0068, 0.0212), ...], "NDCG@10", out / "acc.png")
    training_curves({"sft": curve}, "validation NDCG@10", out / "train.png")
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
from matplotlib.ticker import MaxNLocator

DPI = 100


@dataclass(frozen=True)
class Interval:
    """A point estimate with its 95% interval (bounds may be missing)."""

    label: str
    mean: float
    lo: float | None = None
    hi: float | None = None


@dataclass
class Curve:
    """One run's training log: loss per logged step, validation metric per epoch."""

    steps: list[int] = field(default_factory=list)
    loss: list[float] = field(default_factory=list)
    epochs: list[int] = field(default_factory=list)
    val: list[float] = field(default_factory=list)


def _save(fig: plt.Figure, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, format="png", dpi=DPI, bbox_inches="tight")
    plt.close(fig)


def forest_plot(
    rows: Sequence[Interval], metric: str, path: Path, reference: str | None = None
) -> None:
    """Horizontal 95% CI bars, one per row (first row on top); the reference's mean dashed."""
    height = 1.2 + 0.45 * len(rows)
    fig, ax = plt.subplots(figsize=(7, height))
    ys = list(range(len(rows)))[::-1]
    for y, row in zip(ys, rows, strict=True):
        lo = row.mean if row.lo is None else row.lo
        hi = row.mean if row.hi is None else row.hi
        color = "tab:red" if row.label == reference else "tab:blue"
        ax.errorbar(
            row.mean,
            y,
            xerr=[[row.mean - lo], [hi - row.mean]],
            fmt="o",
            color=color,
            capsize=4,
        )
        if row.label == reference:
            ax.axvline(
                row.mean, color=color, linestyle="--", linewidth=1, label=f"{row.label} mean"
            )
    ax.set_yticks(ys, [r.label for r in rows])
    ax.set_xlabel(f"{metric} on the test samples (higher is better), 95% CI")
    ax.set_ylim(-0.7, len(rows) - 0.3)
    ax.grid(axis="x", alpha=0.3)
    if reference is not None and any(r.label == reference for r in rows):
        ax.legend(loc="best", fontsize="small")
    _save(fig, path)


def _finite(xs: Sequence[int], ys: Sequence[float]) -> tuple[list[int], list[float]]:
    pairs = [(x, y) for x, y in zip(xs, ys, strict=True) if y is not None and math.isfinite(y)]
    return [p[0] for p in pairs], [p[1] for p in pairs]


def _validation_panel(ax: plt.Axes, curves: Mapping[str, Curve], val_label: str) -> None:
    for name, curve in curves.items():
        xs, ys = _finite(curve.epochs, curve.val)
        ax.plot(xs, ys, marker="o", label=name)
    ax.set_xlabel("epoch")
    ax.set_ylabel(val_label)
    ax.set_title("Validation (selects the checkpoint)")
    epochs = sorted({e for c in curves.values() for e in c.epochs})
    if len(epochs) <= 12:
        ax.set_xticks(epochs)
    else:
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlim(epochs[0] - 0.5, epochs[-1] + 0.5)
    ax.margins(y=0.15)


def training_curves(curves: Mapping[str, Curve], val_label: str, path: Path) -> None:
    """Left: training loss vs optimiser step; right: validation metric per epoch (if logged)."""
    with_val = any(c.val for c in curves.values())
    fig, axes = plt.subplots(1, 2 if with_val else 1, figsize=(11 if with_val else 6.5, 3.8))
    loss_ax = axes[0] if with_val else axes
    for name, curve in curves.items():
        xs, ys = _finite(curve.steps, curve.loss)
        loss_ax.plot(xs, ys, marker=".", label=name)
    loss_ax.set_xlabel("optimiser step")
    loss_ax.set_ylabel("training loss (objective's own units)")
    loss_ax.set_title("Training loss")
    if with_val:
        _validation_panel(axes[1], curves, val_label)
    for ax in axes if with_val else [axes]:
        ax.grid(alpha=0.3)
        if len(curves) > 1:
            ax.legend(fontsize="small")
    fig.tight_layout()
    _save(fig, path)
