"""Descriptive statistics for the dataset card."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd


def gini(counts: np.ndarray) -> float:
    """Gini coefficient of non-negative counts (0 = uniform, -> 1 = concentrated on one)."""
    values = np.sort(np.asarray(counts, dtype=np.float64))
    total = values.sum()
    if len(values) == 0 or total == 0:
        return 0.0
    ranks = np.arange(1, len(values) + 1)
    return float(
        (2 * (ranks * values).sum()) / (len(values) * total) - (len(values) + 1) / len(values)
    )


def top_share(counts: np.ndarray, fraction: float = 0.1) -> float:
    """Share of the total held by the top ``fraction`` of entries (at least one entry)."""
    values = np.sort(np.asarray(counts, dtype=np.float64))[::-1]
    total = values.sum()
    if len(values) == 0 or total == 0:
        return 0.0
    top = max(1, math.ceil(fraction * len(values)))
    return float(values[:top].sum() / total)


def distribution(values: np.ndarray) -> dict[str, float]:
    """min / max / mean / median of an integer array."""
    values = np.asarray(values)
    if len(values) == 0:
        return {"min": 0, "max": 0, "mean": 0.0, "median": 0.0}
    return {
        "min": int(values.min()),
        "max": int(values.max()),
        "mean": round(float(values.mean()), 4),
        "median": float(np.median(values)),
    }


def popularity(counts: np.ndarray) -> dict[str, float]:
    """Concentration of item counts: Gini and the top-10% share."""
    return {"gini": round(gini(counts), 6), "top10pct_share": round(top_share(counts, 0.1), 6)}


def training_interactions(train: pd.DataFrame, n_items: int) -> np.ndarray:
    """``[n_items]`` int64: distinct users who interacted with each item in ``train``'s histories
    and targets, each (user, item) pair once (sliding-window samples repeat an interaction in many
    histories). On the whole training split, before subsampling, this is every training
    interaction."""
    lengths = train["history"].map(len).to_numpy(dtype=np.int64)
    users = train["user"].to_numpy()
    hist = [np.asarray(h, dtype=np.int64) for h in train["history"]]
    items = np.concatenate([*hist, train["target"].to_numpy(dtype=np.int64)])
    pairs = pd.DataFrame(
        {"user": np.concatenate([np.repeat(users, lengths), users]), "item": items}
    )
    unique = pairs.drop_duplicates()["item"].to_numpy(dtype=np.int64)
    return np.bincount(unique, minlength=n_items).astype(np.int64)


def split_summary(frame: pd.DataFrame, before_subsample: int) -> dict[str, Any]:
    """Size, users and time span of one split."""
    stamps = frame["timestamp"]
    return {
        "samples": len(frame),
        "samples_before_subsample": int(before_subsample),
        "users": int(frame["user"].nunique()),
        "timestamp_min": int(stamps.min()) if len(frame) else None,
        "timestamp_max": int(stamps.max()) if len(frame) else None,
        "history_length": distribution(frame["history"].map(len).to_numpy()),
    }


def dataset_stats(
    sequences: pd.DataFrame, samples: pd.DataFrame, n_items: int, max_history: int
) -> dict[str, Any]:
    """Counts, sparsity, sequence/history lengths and popularity of the prepared data."""
    n_users = int(sequences["user"].nunique())
    n_inter = len(sequences)
    item_counts = np.bincount(sequences["item"].to_numpy(), minlength=n_items)
    target_counts = np.bincount(samples["target"].to_numpy(), minlength=n_items)
    history_lengths = samples["history"].map(len).to_numpy()
    return {
        "counts": {
            "users": n_users,
            "items": n_items,
            "interactions": n_inter,
            "samples": len(samples),
        },
        "sparsity": round(1.0 - n_inter / (n_users * n_items), 6),
        "sequence_length": distribution(sequences.groupby("user").size().to_numpy()),
        "history_length": {
            **distribution(history_lengths),
            "full_share": round(float((history_lengths == max_history).mean()), 6),
        },
        "popularity": {
            "interactions": popularity(item_counts),
            "targets": popularity(target_counts),
        },
    }
