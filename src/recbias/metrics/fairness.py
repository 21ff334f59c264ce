"""Group fairness of top-K lists: MGU@K, DGU@K and top-1 share per item group.

An :class:`ItemGrouping` spreads every item's unit weight over G groups (``weights [n_items, G]``):
one-hot for relevance groups (GDRT Eq. 2) and popularity quintiles, ``1/|G_i|`` per genre for
multi-genre items (SPRec). Items with an all-zero row are *ungrouped*: skipped and counted.

MGU/DGU follow SPRec ``eval/evaluate.py`` (peer reference §6.2; GDRT §4.1.4 describes the same):

    g_P(g) = share of group g in the top-K recommendations
    g_H(g) = share of group g in the users' histories
    d_g    = g_P(g) − g_H(g)
    MGU@K  = (1/G) Σ_g |d_g|              DGU@K = max_g d_g − min_g d_g

``mode="pooled"`` (SPRec, the default) pools the weights of every list and every history over all
test samples, normalises each pool to sum to 1, then takes d. ``mode="per_user"`` computes d,
MGU and DGU per test sample (each sample's own recommendations vs its own history) and averages
MGU and DGU over samples; a sample whose top-K or history holds no grouped item is skipped and
counted. A "user" is a test sample (sliding-window samples of one user count separately, as in
SPRec).

    gap = group_gap(recs.items, test["history"], grouping, k=5, mode="pooled")
    gap.mgu, gap.dgu, gap.gap                       # [G] d_g
    top1 = top1_group_shares(recs.items, test["target"].to_numpy(), grouping)
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from recbias.config import Config, spec
from recbias.errors import RecbiasError
from recbias.metrics.concentration import check_item_ids, top_k_lists

GapMode = Literal["pooled", "per_user"]
GroupingKind = Literal["relevance", "genre", "popularity"]


@dataclass(frozen=True)
class ItemGrouping:
    """``weights [n_items, G]`` float64: each row sums to 1 (grouped item) or 0 (ungrouped)."""

    name: str
    labels: list[str]
    weights: np.ndarray

    def __post_init__(self) -> None:
        w = np.asarray(self.weights, dtype=np.float64)
        if w.ndim != 2 or w.shape[1] != len(self.labels):
            raise RecbiasError(
                f"grouping {self.name!r}: weights {w.shape} for {len(self.labels)} labels"
            )
        sums = w.sum(axis=1)
        if not np.all(np.isclose(sums, 1.0) | (sums == 0)) or (w < 0).any():
            raise RecbiasError(f"grouping {self.name!r}: rows must be ≥ 0 and sum to 1 or 0")
        object.__setattr__(self, "weights", w)

    @classmethod
    def from_labels(cls, name: str, group_of: np.ndarray, labels: Sequence[str]) -> ItemGrouping:
        """One-hot grouping from ``group_of [n_items]`` (−1 = ungrouped)."""
        group_of = np.asarray(group_of, dtype=np.int64)
        w = np.zeros((group_of.size, len(labels)))
        has = group_of >= 0
        w[np.flatnonzero(has), group_of[has]] = 1.0
        return cls(name, list(labels), w)

    @property
    def n_items(self) -> int:
        return int(self.weights.shape[0])

    @property
    def n_groups(self) -> int:
        return int(self.weights.shape[1])

    def group_of(self) -> np.ndarray:
        """[n_items] the group of largest weight (first on ties), −1 for ungrouped items."""
        return np.where(self.weights.sum(axis=1) > 0, self.weights.argmax(axis=1), -1)

    def mass(self, items: np.ndarray) -> np.ndarray:
        """Summed group weight of ``items`` (any shape, −1 ignored): [G]."""
        flat = np.asarray(items, dtype=np.int64).ravel()
        return self.weights[flat[flat >= 0]].sum(axis=0)


@dataclass(frozen=True)
class GroupGap:
    """MGU/DGU of one grouping at one K. Shares and gaps are [G] (per-user mode: sample means)."""

    grouping: str
    labels: list[str]
    k: int
    mode: str
    rec_share: np.ndarray
    history_share: np.ndarray
    gap: np.ndarray
    mgu: float
    dgu: float
    n_used: int
    n_skipped: int
    ungrouped_slots: int
    empty_slots: int

    def as_dict(self) -> dict[str, Any]:
        """The numbers as JSON types (slot counts left out)."""
        return {
            "grouping": self.grouping,
            "k": self.k,
            "mode": self.mode,
            "labels": self.labels,
            "rec_share": self.rec_share.tolist(),
            "history_share": self.history_share.tolist(),
            "gap": self.gap.tolist(),
            "mgu": self.mgu,
            "dgu": self.dgu,
            "n_used": self.n_used,
            "n_skipped": self.n_skipped,
        }


def mgu_dgu(gap: np.ndarray) -> tuple[float, float]:
    """(MGU, DGU) of gaps ``d [G]``: mean |d| and max d − min d."""
    return float(np.abs(gap).mean()), float(gap.max() - gap.min())


def _history_matrix(histories: Sequence[Sequence[int]]) -> np.ndarray:
    """Ragged histories -> ``[n, max_len]`` int64 padded with −1."""
    width = max((len(h) for h in histories), default=0)
    out = np.full((len(histories), width), -1, dtype=np.int64)
    for row, h in enumerate(histories):
        out[row, : len(h)] = np.asarray(h, dtype=np.int64)
    return out


def group_gap(
    items: np.ndarray,
    histories: Sequence[Sequence[int]],
    grouping: ItemGrouping,
    k: int,
    mode: GapMode = "pooled",
    where: str = "recommendations",
) -> GroupGap:
    """MGU@k / DGU@k of top-``k`` lists ``items [n, k0]`` against the samples' ``histories``."""
    lists = top_k_lists(items, k, grouping.n_items, where)
    hist = _history_matrix(list(histories))
    if hist.shape[0] != lists.shape[0]:
        raise RecbiasError(f"{lists.shape[0]} recommendation lists but {hist.shape[0]} histories")
    check_item_ids(hist, grouping.n_items, "samples", "history")
    rec_mass = grouping.weights[lists.clip(0)] * (lists >= 0)[..., None]  # [n, k, G]
    hist_mass = grouping.weights[hist.clip(0)] * (hist >= 0)[..., None]
    rec_mass, hist_mass = rec_mass.sum(axis=1), hist_mass.sum(axis=1)  # [n, G]
    ungrouped = int(((lists >= 0) & (grouping.weights.sum(axis=1)[lists.clip(0)] == 0)).sum())
    common = dict(
        grouping=grouping.name,
        labels=grouping.labels,
        k=k,
        mode=mode,
        ungrouped_slots=ungrouped,
        empty_slots=int((lists < 0).sum()),
    )
    if mode == "pooled":
        return _pooled(rec_mass, hist_mass, common)
    if mode == "per_user":
        return _per_user(rec_mass, hist_mass, common)
    raise RecbiasError(f"mode must be 'pooled' or 'per_user', got {mode!r}")


def _pooled(rec: np.ndarray, hist: np.ndarray, common: dict) -> GroupGap:
    if rec.sum() == 0 or hist.sum() == 0:
        raise RecbiasError(
            f"grouping {common['grouping']!r}: no grouped item in the lists or histories"
        )
    p, h = rec.sum(axis=0) / rec.sum(), hist.sum(axis=0) / hist.sum()
    mgu, dgu = mgu_dgu(p - h)
    return GroupGap(
        rec_share=p,
        history_share=h,
        gap=p - h,
        mgu=mgu,
        dgu=dgu,
        n_used=len(rec),
        n_skipped=0,
        **common,
    )


def _per_user(rec: np.ndarray, hist: np.ndarray, common: dict) -> GroupGap:
    ok = (rec.sum(axis=1) > 0) & (hist.sum(axis=1) > 0)
    if not ok.any():
        raise RecbiasError(f"grouping {common['grouping']!r}: no sample has grouped items in both")
    p = rec[ok] / rec[ok].sum(axis=1, keepdims=True)
    h = hist[ok] / hist[ok].sum(axis=1, keepdims=True)
    d = p - h  # [n_ok, G]
    mgu, dgu = float(np.abs(d).mean(axis=1).mean()), float((d.max(axis=1) - d.min(axis=1)).mean())
    return GroupGap(
        rec_share=p.mean(axis=0),
        history_share=h.mean(axis=0),
        gap=d.mean(axis=0),
        mgu=mgu,
        dgu=dgu,
        n_used=int(ok.sum()),
        n_skipped=int((~ok).sum()),
        **common,
    )


@dataclass(frozen=True)
class Top1Shares:
    """Share of top-1 recommendations vs share of test targets per group (GDRT Figures 3, 8)."""

    grouping: str
    labels: list[str]
    rec_share: np.ndarray  # [G]
    target_share: np.ndarray  # [G]
    n_lists: int
    empty: int  # lists whose first slot is empty (ignored)

    def as_dict(self) -> dict[str, Any]:
        """The numbers as JSON types."""
        return {
            "grouping": self.grouping,
            "labels": self.labels,
            "rec_share": self.rec_share.tolist(),
            "target_share": self.target_share.tolist(),
            "n_lists": self.n_lists,
            "empty": self.empty,
        }


def top1_group_shares(
    items: np.ndarray, targets: np.ndarray, grouping: ItemGrouping, where: str = "recommendations"
) -> Top1Shares:
    """Group shares of the first item of each list and of the targets ``[n]``."""
    first = top_k_lists(items, 1, grouping.n_items, where)[:, 0]
    targets = np.asarray(targets, dtype=np.int64)
    check_item_ids(targets, grouping.n_items, where, "target")
    rec, tgt = grouping.mass(first), grouping.mass(targets)
    if rec.sum() == 0 or tgt.sum() == 0:
        raise RecbiasError(f"grouping {grouping.name!r}: no grouped top-1 item or target")
    return Top1Shares(
        grouping.name,
        grouping.labels,
        rec / rec.sum(),
        tgt / tgt.sum(),
        int(first.size),
        int((first < 0).sum()),
    )


@dataclass
class FairnessConfig(Config):
    """Settings of the fairness and concentration analysis (``[fairness]`` table)."""

    ks: list[int] = field(
        default_factory=lambda: [5, 10], metadata=spec("cut-offs K", ge=1, min_len=1, unique=True)
    )
    groupings: list[GroupingKind] = field(
        default_factory=lambda: ["relevance", "genre", "popularity"],
        metadata={
            "help": "relevance = GDRT Eq. 2 groups (needs the LM); genre = SPRec genres; "
            "popularity = training-count quantiles",
            "min_len": 1,
        },
    )
    n_groups: int = field(default=5, metadata=spec("groups for relevance and popularity", ge=2))
    mode: GapMode = field(
        default="pooled",
        metadata={
            "help": "pooled = SPRec (corpus-level shares); per_user = mean of per-sample gaps"
        },
    )
    head_fraction: float = field(
        default=0.2, metadata=spec("share of most popular items that is the short head", gt=0, lt=1)
    )
    or_top: int = field(default=3, metadata=spec("most-recommended items counted by ORRatio", ge=1))
    relevance_batch_size: int = field(
        default=64, metadata=spec("catalog titles per forward pass of the Eq. 2 pass", ge=1)
    )
