"""Overlap of two sets of top-K lists, row by row.

    jaccard(original.items, perturbed.items)      # [n]: |A ∩ B| / |A ∪ B| of each pair of rows
    shared_items(original.items, perturbed.items) # [n]: |A ∩ B|, the number of shared items

Jaccard is not the share of a list that is kept: two full K-item lists sharing m items have
Jaccard m / (2K − m), so a Jaccard of 0.33 between two 10-item lists means 5 shared items (half of
each list), and m / K = 2J / (1 + J).

Empty slots (item −1) are ignored and duplicates count once; two rows with no valid item are
identical (1.0). The closed-loop simulator keeps a batched torch version on its own tensors
(:func:`recbias.simulate.metrics.jaccard_pairs`, full lists of sampled user pairs); a test checks
that both agree.
"""

from __future__ import annotations

import numpy as np


def jaccard(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Per-row Jaccard of two ``[n, k]`` item-id arrays (−1 = empty slot) -> ``[n]`` float64."""
    out = np.empty(len(a))
    for i, (x, y) in enumerate(zip(a, b, strict=True)):
        sx, sy = set(x[x >= 0].tolist()), set(y[y >= 0].tolist())
        out[i] = len(sx & sy) / len(sx | sy) if sx | sy else 1.0
    return out


def shared_items(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Per-row |A ∩ B| of two ``[n, k]`` item-id arrays (−1 = empty slot) -> ``[n]`` int64."""
    out = np.empty(len(a), dtype=np.int64)
    for i, (x, y) in enumerate(zip(a, b, strict=True)):
        out[i] = len(set(x[x >= 0].tolist()) & set(y[y >= 0].tolist()))
    return out
