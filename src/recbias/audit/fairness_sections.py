"""Report sections of the fairness and concentration metrics: their tables and figures.

:mod:`recbias.metrics.fairness` and :mod:`recbias.metrics.concentration` return numbers; this
module turns them into :class:`~recbias.report.sections.Section` objects for the audit::

    gaps = [group_gap(recs.items, histories, grouping, k) for k in (5, 10)]
    top1 = [top1_group_shares(recs.items, targets, grouping)]
    sec = fairness_section(gaps, top1, out_dir, model="sft")   # MGU/DGU table + share figures
    sec = concentration_section({"sft": [conc]}, out_dir, {"sft": counts})  # + Lorenz curves
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from recbias.metrics.concentration import Concentration, gini, lorenz_curve
from recbias.metrics.fairness import GroupGap, Top1Shares
from recbias.report.format import round_cell
from recbias.report.plotting import agg_pyplot, save_figure
from recbias.report.sections import Figure, Section, Table

_GAP_COLUMNS = ["grouping", "K", "mode", "MGU", "DGU", "samples used", "skipped",
                "ungrouped slots", "empty slots"]  # fmt: skip


def fairness_section(
    gaps: Sequence[GroupGap], top1: Sequence[Top1Shares], out_dir: Path, model: str = "model"
) -> Section:
    """MGU/DGU table, a rec-vs-history share figure per grouping and top-1-vs-target figures."""
    sec = Section(f"fairness_{model}", f"Group fairness of {model}'s recommendations")
    sec.summary = (
        f"MGU@K = mean |rec share − history share| over groups, DGU@K = max − min of the gaps "
        f"(SPRec). Lower is fairer. Shares are {gaps[0].mode if gaps else 'pooled'} over samples."
    )
    rows = [[g.grouping, g.k, g.mode, round(g.mgu, 4), round(g.dgu, 4), g.n_used, g.n_skipped,
             g.ungrouped_slots, g.empty_slots] for g in gaps]  # fmt: skip
    sec.tables.append(Table("mgu_dgu", "MGU@K and DGU@K per grouping", _GAP_COLUMNS, rows))
    sec.data["gaps"] = [g.as_dict() for g in gaps]
    sec.data["top1"] = [t.as_dict() for t in top1]
    largest_k = {g.grouping: g for g in sorted(gaps, key=lambda g: g.k)}
    for g in largest_k.values():
        sec.figures.append(_share_figure(
            g.labels, g.rec_share, g.history_share, f"top-{g.k}", "history",
            f"{model}_{g.grouping}_gap", out_dir,
        ))  # fmt: skip
    for t in top1:
        sec.figures.append(_share_figure(
            t.labels, t.rec_share, t.target_share, "top-1", "test targets",
            f"{model}_{t.grouping}_top1", out_dir,
        ))  # fmt: skip
    return sec


def _share_figure(
    labels: list[str],
    rec: np.ndarray,
    ref: np.ndarray,
    rec_name: str,
    ref_name: str,
    name: str,
    out_dir: Path,
) -> Figure:
    """Bars of the recommendation share per group with the reference share as dashed marks."""
    plt = agg_pyplot()
    fig, ax = plt.subplots(figsize=(max(4.0, 0.6 * len(labels) + 2), 3.2))
    x = np.arange(len(labels))
    ax.bar(x, rec, color="tab:blue", label=f"{rec_name} share")
    ax.hlines(ref, x - 0.4, x + 0.4, colors="k", linestyles="--", label=f"{ref_name} share")
    wide = len(labels) > 6
    ax.set_xticks(x, labels, rotation=30 if wide else 0, ha="right" if wide else "center")
    ax.set_ylabel("share")
    ax.legend(fontsize=8)
    caption = (
        f"{name.split('_', 1)[1].replace('_', ' ')}: {rec_name} share per group (bars) against "
        f"its {ref_name} share (dashed). Bars above the dashed line mean the group is "
        f"over-recommended relative to its share of {ref_name}."
    )
    return Figure(save_figure(fig, out_dir, f"fairness_{name}"), caption)


_CONC_COLUMNS = ["model", "K", "coverage", "gini", "hhi", "entropy", "entropy_norm",
                 "tail_share", "div_ratio", "or_ratio", "distinct", "empty_slots"]  # fmt: skip
_LORENZ_CAPTION = (
    "Lorenz curves of item exposure in top-K lists. The diagonal is equal exposure; the further "
    "a curve sags below it, the more the slots concentrate on few items (higher Gini)."
)


def concentration_section(
    results: Mapping[str, Sequence[Concentration]],
    out_dir: Path,
    exposure: Mapping[str, np.ndarray] | None = None,
) -> Section:
    """Table of every model × K and, given exposure ``counts [n_items]`` per model, Lorenz curves."""
    rows = [
        [name, *[round_cell(getattr(c, col.lower())) for col in _CONC_COLUMNS[1:]]]
        for name, cs in results.items()
        for c in cs
    ]
    sec = Section("concentration", "Exposure concentration of top-K lists")
    sec.summary = (
        "Higher Gini/HHI/ORRatio and lower coverage, entropy, tail share and DivRatio mean the "
        "recommendations concentrate on fewer items. Empty slots are ignored."
    )
    sec.tables.append(
        Table("concentration", "Concentration metrics per model and K", _CONC_COLUMNS, rows)
    )
    sec.data["concentration"] = {n: [c.as_dict() for c in cs] for n, cs in results.items()}
    if exposure:
        sec.figures.append(Figure(_lorenz_figure(exposure, out_dir), _LORENZ_CAPTION))
    return sec


def _lorenz_figure(exposure: Mapping[str, np.ndarray], out_dir: Path) -> str:
    plt = agg_pyplot()
    fig, ax = plt.subplots(figsize=(4.5, 4))
    ax.plot([0, 1], [0, 1], "k--", lw=1, label="equal exposure")
    for name, counts in exposure.items():
        x, y = lorenz_curve(counts)
        ax.plot(x, y, label=f"{name} (Gini {gini(counts):.2f})")
    ax.set_xlabel("share of catalog (least exposed first)")
    ax.set_ylabel("share of top-K slots")
    ax.legend(fontsize=8)
    return save_figure(fig, out_dir, "concentration_lorenz")
