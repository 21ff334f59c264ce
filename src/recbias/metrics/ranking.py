"""Top-K ranking metrics with one relevant item per sample (HR@K, NDCG@K).

Conventions (shared by D3, IGD, MSL, BIGRec and CFT; see the peer reference §6.1):

* ``rank`` is the 0-based position of the target in the ranked list, or −1 when it is absent.
* ``HR@K = [rank < K]`` and ``NDCG@K = [rank < K] / log2(rank + 2)``; the ideal DCG is 1.
* Means run over **all** samples: an empty slot (item id −1) or an invalid output is a miss.
* K may exceed the list length (D3/IGD report @20 from 10 beams, which equals @10); the
  result then carries ``list_length`` so a reader can see that @K was truncated.

Example::

    items = np.array([[3, 7, 1], [5, -1, -1]])
    ranking_metrics(items, np.array([7, 2]), ks=(1, 3))
    # {'HR@1': 0.0, 'HR@3': 0.5, 'NDCG@1': 0.0, 'NDCG@3': 0.315..., 'valid_ratio': 0.666..., ...}
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np

logger = logging.getLogger(__name__)

DEFAULT_KS: tuple[int, ...] = (1, 3, 5, 10, 20)


def target_ranks(items: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """0-based rank of each target in its list, or −1 when absent.

    items: [n, k] int item ids, −1 = empty slot (never matches). targets: [n] item ids ≥ 0.
    If an item occurs twice in a list the first occurrence counts (D3/IGD ``calc.py`` keep the
    last one; lists of distinct items, as beam search over a trie yields, make this moot).
    Returns: [n] int64.
    """
    items = np.asarray(items)
    targets = np.asarray(targets)
    if items.ndim != 2 or targets.shape != (items.shape[0],):
        raise ValueError(
            f"expected items [n, k] and targets [n], got {items.shape} and {targets.shape}"
        )
    if targets.size and targets.min() < 0:
        raise ValueError("targets must be item ids ≥ 0; a negative target can never be hit")
    match = items == targets[:, None]
    first = match.argmax(axis=1) if items.shape[1] else np.zeros(len(targets), dtype=np.int64)
    return np.where(match.any(axis=1), first, -1).astype(np.int64)


def hit_rate(ranks: np.ndarray, k: int) -> np.ndarray:
    """Per-sample HR@k: 1.0 when the target sits in the first k slots. ranks: [n] → [n] float64."""
    ranks = np.asarray(ranks)
    return ((ranks >= 0) & (ranks < k)).astype(np.float64)


def ndcg(ranks: np.ndarray, k: int) -> np.ndarray:
    """Per-sample NDCG@k with one relevant item: 1/log2(rank + 2) on a hit, else 0. [n] → [n]."""
    ranks = np.asarray(ranks)
    hit = (ranks >= 0) & (ranks < k)
    gain = 1.0 / np.log2(np.where(hit, ranks, 0) + 2.0)
    return np.where(hit, gain, 0.0)


def check_ks(ks: Sequence[int]) -> tuple[int, ...]:
    """Validate a list of cut-offs: positive, distinct integers. Returns them as a tuple."""
    out = tuple(int(k) for k in ks)
    if not out or min(out) < 1 or len(set(out)) != len(out):
        raise ValueError(f"ks must be distinct positive integers, got {list(ks)}")
    return out


def metric_names(ks: Sequence[int]) -> list[str]:
    """Metric keys in report order: ``HR@k`` for every k, then ``NDCG@k``."""
    return [f"HR@{k}" for k in ks] + [f"NDCG@{k}" for k in ks]


def per_sample_metrics(
    items: np.ndarray, targets: np.ndarray, ks: Sequence[int] = DEFAULT_KS
) -> dict[str, np.ndarray]:
    """Per-sample ``HR@k`` and ``NDCG@k`` arrays ([n] float64 each), keyed as in reports."""
    ks = check_ks(ks)
    ranks = target_ranks(items, targets)
    out = {f"HR@{k}": hit_rate(ranks, k) for k in ks}
    out.update({f"NDCG@{k}": ndcg(ranks, k) for k in ks})
    return out


def valid_ratio(items: np.ndarray) -> float:
    """Share of the n×k slots that hold an item id (≥ 0); empty or invalid outputs lower it.

    Whoever builds the lists decides validity: generations outside the catalogue must be −1.
    """
    items = np.asarray(items)
    return float((items >= 0).mean()) if items.size else 0.0


def warn_if_truncated(ks: Sequence[int], list_length: int) -> None:
    """Log once that cut-offs beyond the list length repeat the metric at ``list_length``."""
    beyond = [k for k in ks if k > list_length]
    if beyond:
        logger.warning(
            "lists hold %d items, so metrics @%s equal @%d", list_length, beyond, list_length
        )


def ranking_metrics(
    items: np.ndarray, targets: np.ndarray, ks: Sequence[int] = DEFAULT_KS
) -> dict[str, float]:
    """Mean HR@k and NDCG@k over all samples, plus ``valid_ratio``, ``list_length`` and ``n``.

    items: [n, k] ranked item ids (−1 = empty); targets: [n].
    """
    items = np.asarray(items)
    if items.ndim != 2 or items.shape[0] == 0:
        raise ValueError(f"expected a non-empty [n, k] array of items, got shape {items.shape}")
    per_sample = per_sample_metrics(items, targets, ks)
    warn_if_truncated(check_ks(ks), items.shape[1])
    out: dict[str, float] = {name: float(v.mean()) for name, v in per_sample.items()}
    out["valid_ratio"] = valid_ratio(items)
    out["list_length"] = int(items.shape[1])
    out["n"] = int(items.shape[0])
    return out
