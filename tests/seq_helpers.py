"""Shared data of the sequential-recommender tests (SASRec, GRU4Rec): a next-item rule."""

from __future__ import annotations

import numpy as np
import pandas as pd

N_ITEMS = 12


def next_item_samples(n, seed, start_id=0):
    """Histories of consecutive items (mod N_ITEMS); the target is always last + 1."""
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n):
        first, size = int(rng.integers(N_ITEMS)), int(rng.integers(1, 12))
        hist = [(first + j) % N_ITEMS for j in range(size)]
        rows.append(
            {
                "sample_id": start_id + i,
                "user": f"u{i}",
                "history": hist,
                "target": (hist[-1] + 1) % N_ITEMS,
            }
        )
    return pd.DataFrame(rows)
