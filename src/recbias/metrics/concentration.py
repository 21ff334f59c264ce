"""Exposure concentration of top-K lists: coverage, Gini, HHI, entropy, tail share, DivRatio, ORRatio.

Every metric counts *exposure*: how many top-K slots each catalog item fills over all lists.
Empty slots (item −1, an invalid or missing output) are ignored and reported as ``empty_slots``;
shares are over the filled slots. With full lists (as in every peer repo) the filled slots are
the peers' ``total·K``, so DivRatio and ORRatio equal SPRec's ``eval/evaluate.py``:

* ``DivRatio = |distinct items in all top-K lists| / filled slots``
* ``ORRatio  = (slots taken by the ``or_top`` = 3 most-recommended items) / filled slots``

    conc = concentration(recs.items, k=10, n_items=len(titles), popularity=train_counts)
    conc.gini, conc.tail_share, conc.div_ratio
    x, y = lorenz_curve(exposure_counts(recs.items[:, :10], len(titles)))
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from recbias.errors import DataError, RecbiasError


def top_k_lists(
    items: np.ndarray, k: int, n_items: int, where: str = "recommendations"
) -> np.ndarray:
    """First ``k`` columns of ``items [n, k0]`` after checking K and the item ids.

    A K above the list length, or ids outside ``[-1, n_items)`` (a predictions file of another
    dataset), raise errors naming K / ``where`` and the field.
    """
    items = np.asarray(items, dtype=np.int64)
    if items.ndim != 2:
        raise DataError(f"{where}: field 'items' must be [n, k] lists, got shape {items.shape}")
    if k < 1 or k > items.shape[1]:
        raise RecbiasError(
            f"K={k} is not in 1..{items.shape[1]}: {where} lists hold {items.shape[1]} items"
        )
    check_item_ids(items, n_items, where, "items")
    return items[:, :k]


def check_item_ids(ids: np.ndarray, n_items: int, where: str, field_name: str) -> None:
    """Raise :class:`DataError` if ``ids`` hold anything outside ``[-1, n_items)``."""
    ids = np.asarray(ids)
    if ids.size and (ids.min() < -1 or ids.max() >= n_items):
        bad = int(ids.max()) if ids.max() >= n_items else int(ids.min())
        raise DataError(
            f"{where}: field {field_name!r} holds item id {bad}, outside the catalog of "
            f"{n_items} items (predictions of another dataset?)"
        )


def exposure_counts(items: np.ndarray, n_items: int) -> np.ndarray:
    """Slots each item fills: ``items [n, k]`` (−1 ignored) -> ``[n_items]`` int64."""
    flat = np.asarray(items, dtype=np.int64).ravel()
    return np.bincount(flat[flat >= 0], minlength=n_items).astype(np.int64)


def coverage(counts: np.ndarray) -> float:
    """Share of the catalog recommended at least once."""
    counts = np.asarray(counts)
    return float((counts > 0).sum() / counts.size)


def gini(counts: np.ndarray) -> float:
    """Gini of exposure over the whole catalog (zeros included): 0 = uniform, (n−1)/n = one item.

    ``G = Σ_i (2i − n − 1)·x_(i) / (n·Σx)`` with ``x`` ascending and ``i = 1..n``; NaN if Σx = 0.
    """
    x = np.sort(np.asarray(counts, dtype=np.float64))
    n, total = x.size, x.sum()
    if total <= 0:
        return math.nan
    rank = np.arange(1, n + 1)
    return float(((2 * rank - n - 1) * x).sum() / (n * total))


def hhi(counts: np.ndarray) -> float:
    """Herfindahl-Hirschman index Σ share² of exposure (1/n = uniform, 1 = one item)."""
    share = _shares(counts)
    return float((share**2).sum()) if share is not None else math.nan


def entropy(counts: np.ndarray, normalized: bool = False) -> float:
    """Shannon entropy (nats) of exposure shares; ``normalized`` divides by log(catalog size)."""
    share = _shares(counts)
    if share is None:
        return math.nan
    nz = share[share > 0]
    h = float(-(nz * np.log(nz)).sum())
    n = np.asarray(counts).size
    return h / math.log(n) if normalized and n > 1 else h


def _shares(counts: np.ndarray) -> np.ndarray | None:
    c = np.asarray(counts, dtype=np.float64)
    return c / c.sum() if c.sum() > 0 else None


def head_items(popularity: np.ndarray, head_fraction: float = 0.2) -> np.ndarray:
    """[n_items] bool: the short head, the ⌈f·n⌉ most popular items.

    Items tied with the last head item join the head (a tie is never split); items with
    popularity 0 are never head. Everything else is the long tail.
    """
    pop = np.asarray(popularity, dtype=np.float64)
    if not 0 < head_fraction < 1:
        raise RecbiasError(f"head_fraction must be in (0, 1), got {head_fraction}")
    size = math.ceil(head_fraction * pop.size)
    cut = np.sort(pop)[::-1][size - 1]
    return (pop >= cut) & (pop > 0)


def tail_share(counts: np.ndarray, popularity: np.ndarray, head_fraction: float = 0.2) -> float:
    """Share of filled slots that go to long-tail items (outside :func:`head_items`)."""
    counts = np.asarray(counts)
    total = counts.sum()
    return (
        float(counts[~head_items(popularity, head_fraction)].sum() / total) if total else math.nan
    )


def div_ratio(counts: np.ndarray) -> float:
    """Distinct recommended items / filled slots (SPRec's DivRatio with full lists)."""
    total = np.asarray(counts).sum()
    return float((np.asarray(counts) > 0).sum() / total) if total else math.nan


def or_ratio(counts: np.ndarray, top: int = 3) -> float:
    """Slots of the ``top`` most-recommended items / filled slots (SPRec's ORRatio, top = 3)."""
    counts = np.asarray(counts)
    total = counts.sum()
    return float(np.sort(counts)[::-1][:top].sum() / total) if total else math.nan


@dataclass(frozen=True)
class Concentration:
    """Concentration of ``n_lists`` top-``k`` lists over a catalog of ``n_items``."""

    k: int
    n_lists: int
    filled_slots: int
    empty_slots: int
    distinct: int
    coverage: float
    gini: float
    hhi: float
    entropy: float
    entropy_norm: float
    tail_share: float
    div_ratio: float
    or_ratio: float

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def concentration(
    items: np.ndarray,
    k: int,
    n_items: int,
    popularity: np.ndarray,
    head_fraction: float = 0.2,
    or_top: int = 3,
    where: str = "recommendations",
) -> Concentration:
    """All concentration metrics of the top-``k`` of ``items [n, k0]``; popularity: [n_items]."""
    lists = top_k_lists(items, k, n_items, where)
    if np.asarray(popularity).shape != (n_items,):
        raise RecbiasError(f"popularity has shape {np.shape(popularity)}, expected ({n_items},)")
    counts = exposure_counts(lists, n_items)
    return Concentration(
        k=k,
        n_lists=int(lists.shape[0]),
        filled_slots=int(counts.sum()),
        empty_slots=int((lists < 0).sum()),
        distinct=int((counts > 0).sum()),
        coverage=coverage(counts),
        gini=gini(counts),
        hhi=hhi(counts),
        entropy=entropy(counts),
        entropy_norm=entropy(counts, normalized=True),
        tail_share=tail_share(counts, popularity, head_fraction),
        div_ratio=div_ratio(counts),
        or_ratio=or_ratio(counts, or_top),
    )


def lorenz_curve(counts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(cumulative share of items, cumulative share of exposure), items ascending by exposure."""
    x = np.sort(np.asarray(counts, dtype=np.float64))
    total = x.sum() or 1.0
    return np.linspace(0, 1, x.size + 1), np.concatenate([[0.0], np.cumsum(x) / total])
