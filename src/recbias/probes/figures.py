"""One PNG figure per probe, drawn from the probe's metrics dict (matplotlib, Agg backend).

path = positional_figure(metrics, run_dir / "positional.png")
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
from scipy import stats

from recbias.fsutil import atomic_path


def _save(fig: Any, path: Path) -> Path:
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=120, bbox_inches="tight")
    plt.close(fig)
    return path


def positional_figure(metrics: dict[str, Any], path: Path) -> Path:
    iso, trained = metrics["isolated"], metrics.get("trained") or []
    fig, (ax, ax2) = plt.subplots(1, 2, figsize=(11, 4))
    m = np.asarray(iso["m"])
    ax.plot(m, iso["near_mass_analytic"], "o-", label="isolated head, equal content")
    mean, std = np.asarray(iso["near_mass_sampled"]), np.asarray(iso["near_mass_sampled_std"])
    ax.plot(m, mean, "s-", label="isolated head, sampled keys")
    ax.fill_between(m, mean - std, mean + std, alpha=0.2)
    if trained:
        ax.plot([r["m"] for r in trained], [r["near_mass"] for r in trained], "^-", label="trained")
    ax.set(
        xlabel="positional strength m",
        ylabel=f"mass on last {metrics['window']} items",
        title="Prop. 4.1: near-window attention mass",
    )
    ax.legend(fontsize=8)
    if trained:
        ms, key = [r["m"] for r in trained], f"ndcg@{metrics['k']}"
        ax2.plot(ms, [r[key] for r in trained], "o-", color="C0", label=key.upper())
        twin = ax2.twinx()
        twin.plot(ms, [r["coverage"] for r in trained], "s--", color="C1", label="coverage")
        twin.plot(ms, [r["gini"] for r in trained], "^--", color="C2", label="Gini")
        ax2.set(xlabel="positional strength m", ylabel=key.upper(), title="accuracy vs diversity")
        twin.set_ylabel("coverage / Gini of top-k")
        handles = ax2.get_legend_handles_labels()[0] + twin.get_legend_handles_labels()[0]
        ax2.legend(handles=handles, loc="center right", fontsize=8)
    else:
        ax2.axis("off")
        ax2.text(
            0.5, 0.5, metrics.get("trained_skipped") or "no trained model", ha="center", wrap=True
        )
    return _save(fig, path)


def _loglog(
    ax: Any, counts: np.ndarray, exposure: np.ndarray, fit: dict[str, Any], label: str
) -> None:
    keep = (counts > 0) & (exposure > 0)
    ax.scatter(counts[keep], exposure[keep], s=6, alpha=0.5, label=label)
    if fit.get("exponent") is not None:
        x = np.geomspace(counts[keep].min(), counts[keep].max(), 20)
        ax.plot(
            x,
            np.exp(fit["intercept"]) * x ** fit["exponent"],
            "-",
            label=f"{label}: slope {fit['exponent']:.2f} [{fit['lo']:.2f}, {fit['hi']:.2f}]",
        )
    ax.set(xscale="log", yscale="log")


def popularity_figure(metrics: dict[str, Any], path: Path, curves: dict[str, Any]) -> Path:
    sgd = metrics["sgd"]
    fig, axes = plt.subplots(1, 3, figsize=(15, 4))
    axes[0].plot(sgd["steps"], sgd["mean_log_amplification"], "o-", label="measured")
    axes[0].plot(
        sgd["steps"], sgd["predicted_log_amplification"], "--", label="first order (Lemma 7.1)"
    )
    axes[0].set(
        xlabel="SGD step",
        ylabel="mean log(exposure ratio / count ratio)",
        title="early SGD: popularity amplification",
    )
    axes[0].legend(fontsize=8)
    x, y = np.asarray(sgd["log_count_ratio"]), np.asarray(sgd["log_exposure_ratio"][-1])
    axes[1].scatter(x, y, label=f"step {sgd['steps'][-1]}, exponent {sgd['exponent'][-1]:.2f}")
    axes[1].plot([0, x.max()], [0, x.max()], "k:", label="exposure = count ratio")
    axes[1].set(xlabel="log count ratio", ylabel="log exposure ratio", title="isolated head")
    axes[1].legend(fontsize=8)
    for name, (counts, exposure, fit) in curves.items():
        _loglog(axes[2], counts, exposure, fit, name)
    axes[2].set(
        xlabel="training count", ylabel="mean exposure", title="trained model, platform level"
    )
    if curves:
        axes[2].legend(fontsize=7)
    else:
        axes[2].axis("off")
    return _save(fig, path)


def latent_figure(metrics: dict[str, Any], path: Path, draws: dict[float, np.ndarray]) -> Path:
    fig, (ax, ax2) = plt.subplots(1, 2, figsize=(11, 4))
    delta = metrics["mean_gap"]
    for i, (sigma, values) in enumerate(sorted(draws.items())):
        if sigma == 0:
            continue
        ax.hist(values, bins=80, density=True, alpha=0.35, color=f"C{i}", label=f"σ = {sigma:g}")
        x = np.linspace(values.min(), values.max(), 200)
        ax.plot(x, stats.norm.pdf(x, delta, np.sqrt(2) * sigma), color=f"C{i}")
    ax.set(xlabel="log(a_1 / a_2)", ylabel="density", title="Prop. 4.5: log odds ~ N(Δ, 2σ²)")
    ax.legend(fontsize=8)
    head = metrics["head"]
    ax2.plot(
        [h["sigma"] for h in head], [h["jaccard_topk"] for h in head], "o-", label="isolated head"
    )
    for row_key, label in (
        ("jaccard_between_draws", "model, between draws"),
        ("jaccard_vs_clean", "model vs σ = 0"),
    ):
        rows = metrics.get("model") or []
        if rows:
            ax2.plot([r["sigma"] for r in rows], [r[row_key] for r in rows], "s-", label=label)
    ax2.set(
        xlabel="σ",
        ylabel=f"mean Jaccard of top-{metrics['k']}",
        title="stability across noise draws",
    )
    ax2.legend(fontsize=8)
    return _save(fig, path)


def synthetic_figure(metrics: dict[str, Any], path: Path) -> Path:
    fig, ax = plt.subplots(figsize=(6, 4))
    for i, row in enumerate(metrics["curves"]):
        t = np.arange(len(row["expected"]))
        ax.plot(t, row["expected"], "-", color=f"C{i}", label=f"λ = {row['lambda']:g}")
        mean, se = np.asarray(row["mc_mean"]), np.asarray(row["mc_se"])
        ax.errorbar(t, mean, yerr=1.96 * se, fmt=".", color=f"C{i}", alpha=0.6)
    ax.set(
        xlabel="retraining round",
        ylabel="squared index Σ p²",
        title="Prop. 4.6: exact expectation (line), Monte Carlo (dots)",
    )
    ax.legend(fontsize=8)
    return _save(fig, path)
