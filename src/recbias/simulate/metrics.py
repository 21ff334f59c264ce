"""Per-round concentration, homogenisation and drift metrics of the closed loop.

Counts are per-item histograms ``[n_items]`` (exposures = slate appearances, consumption = chosen
items). With shares ``s_i = c_i / Σ c``:

* ``hhi``       Σ s_i² (the squared index of Prop. 4.6; 1/n uniform … 1 single item)
* ``gini``      Gini of the counts over **all** items, RecBole's definition
  ``Σ_i (2i − n − 1) c_(i) / (n Σ c)`` with ``c_(1) ≤ … ≤ c_(n)``
* ``coverage``  share of items with a non-zero count
* ``tail_share``share of the counts on tail items (outside the round-0 head, see ``head_items``)
* ``jaccard``   mean Jaccard |A ∩ B| / |A ∪ B| of the slates of sampled user pairs
* ``entropy``   Shannon entropy of the shares (nats); ``persistence`` the Pearson correlation of
  consecutive rounds' exposure shares
* ``drift``     total-variation distance between a user's consumed-group profile and round 0

    hhi(np.array([1, 1, 2]))          # 0.375
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor


def shares(counts: np.ndarray) -> np.ndarray:
    total = counts.sum()
    return counts / total if total > 0 else np.zeros(len(counts))


def hhi(counts: np.ndarray) -> float:
    """Squared index Σ s_i² of a count vector [n]."""
    return float(np.sum(shares(np.asarray(counts, np.float64)) ** 2))


def gini(counts: np.ndarray) -> float:
    """Gini coefficient of a count vector [n] (0 = equal, (n−1)/n = one item has all)."""
    c = np.sort(np.asarray(counts, np.float64))
    n, total = len(c), c.sum()
    if n == 0 or total == 0:
        return 0.0
    i = np.arange(1, n + 1)
    return float(np.sum((2 * i - n - 1) * c) / (n * total))


def entropy(counts: np.ndarray) -> float:
    """Shannon entropy (nats) of the shares of a count vector [n]."""
    s = shares(np.asarray(counts, np.float64))
    s = s[s > 0]
    return float(-np.sum(s * np.log(s)))


def persistence(prev: np.ndarray, cur: np.ndarray) -> float:
    """Pearson correlation of two share vectors [n] (1 when either is constant and equal)."""
    a, b = shares(np.asarray(prev, np.float64)), shares(np.asarray(cur, np.float64))
    if a.std() == 0 or b.std() == 0:
        return 1.0 if np.allclose(a, b) else 0.0
    return float(np.corrcoef(a, b)[0, 1])


def coverage(counts: np.ndarray) -> float:
    return float(np.mean(np.asarray(counts) > 0))


def head_items(counts: np.ndarray, head_fraction: float = 0.2) -> np.ndarray:
    """Bool mask [n] of the ``head_fraction`` most counted items (ties to the smaller id)."""
    order = np.argsort(-np.asarray(counts), kind="stable")
    head = np.zeros(len(counts), bool)
    head[order[: round(head_fraction * len(counts))]] = True
    return head


def tail_share(counts: np.ndarray, head: np.ndarray) -> float:
    total = counts.sum()
    return float(counts[~head].sum() / total) if total > 0 else 0.0


def set_sizes(lists: Tensor) -> Tensor:
    """Distinct entries of each row: [p, k] → [p]."""
    s = torch.sort(lists, dim=1).values
    return 1 + (s[:, 1:] != s[:, :-1]).sum(dim=1)


def jaccard_pairs(lists: Tensor, pairs: Tensor) -> Tensor:
    """Jaccard similarity of the item sets of rows pairs[:, 0] and pairs[:, 1]: → [p]."""
    a, b = lists[pairs[:, 0]], lists[pairs[:, 1]]
    a_sorted = torch.sort(a, dim=1).values
    first = torch.ones_like(a_sorted, dtype=torch.bool)
    first[:, 1:] = a_sorted[:, 1:] != a_sorted[:, :-1]
    present = (a_sorted[:, :, None] == b[:, None, :]).any(dim=2)
    inter = (first & present).sum(dim=1)
    union = set_sizes(a) + set_sizes(b) - inter
    return inter.double() / union.double()


def sample_pairs(n_users: int, n_pairs: int, gen: torch.Generator) -> Tensor:
    """``n_pairs`` random user pairs with distinct members: [n_pairs, 2] (n_users ≥ 2)."""
    first = torch.randint(n_users, (n_pairs,), generator=gen)
    offset = torch.randint(1, n_users, (n_pairs,), generator=gen)
    return torch.stack([first, (first + offset) % n_users], dim=1)


def group_profile(
    users: np.ndarray, items: np.ndarray, item_groups: np.ndarray, n_users: int, n_groups: int
) -> np.ndarray:
    """Each user's distribution of interactions over item groups: [n_users, n_groups] float32.

    Users without interactions get the uniform distribution.
    """
    flat = np.asarray(users, np.int64) * n_groups + item_groups[items]
    prof = np.bincount(flat, minlength=n_users * n_groups).reshape(n_users, n_groups)
    prof = prof.astype(np.float32)
    total = prof.sum(axis=1, keepdims=True)
    return np.where(total > 0, prof / np.maximum(total, 1e-12), 1.0 / n_groups).astype(np.float32)


def tv_distance(p: np.ndarray, q: np.ndarray) -> np.ndarray:
    """Total-variation distance row by row: [n, g] × [n, g] → [n] in [0, 1]."""
    return 0.5 * np.abs(p - q).sum(axis=1)


def concentration(counts: np.ndarray, head: np.ndarray, prefix: str) -> dict[str, float]:
    """HHI, Gini, coverage, tail share and effective number of items of one histogram."""
    h = hhi(counts)
    return {
        f"{prefix}_hhi": h,
        f"{prefix}_gini": gini(counts),
        f"{prefix}_coverage": coverage(counts),
        f"{prefix}_tail_share": tail_share(counts, head),
        f"{prefix}_effective_items": 1.0 / h if h > 0 else 0.0,
        f"{prefix}_entropy": entropy(counts),
    }
