"""Per-user sequences, sliding-window samples, train/valid/test split and seeded subsampling.

A sample is ``(user, history, target, timestamp)``: for each position ``i >= min_history`` of a
user's chronological sequence, ``history`` = the previous ``min(i, max_history)`` items (oldest
first), ``target`` = item ``i`` and ``timestamp`` = the target's. ``sample_id`` numbers all samples
in global order (timestamp, user, position), so ids are unique across splits and do not depend on
the split method or on subsampling.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd

from recbias.data.config import PrepareConfig
from recbias.errors import DataError

SPLITS = ("train", "valid", "test")
_GLOBAL_ORDER = ["timestamp", "user", "position"]


def sort_sequences(interactions: pd.DataFrame) -> pd.DataFrame:
    """Sort by user then time; ties keep the original file order (the frame's index)."""
    frame = interactions.assign(order=interactions.index.to_numpy())
    frame = frame.sort_values(["user", "timestamp", "order"], kind="stable")
    return frame.drop(columns="order").reset_index(drop=True)


def _user_bounds(users: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    starts = np.flatnonzero(np.r_[True, users[1:] != users[:-1]])
    return starts, np.r_[starts[1:], len(users)]


def sliding_windows(sequences: pd.DataFrame, min_history: int, max_history: int) -> pd.DataFrame:
    """One sample per position ``i >= min_history`` of each user's (sorted) sequence."""
    users = sequences["user"].to_numpy(dtype=object)
    items = sequences["item"].to_numpy(dtype=np.int64)
    stamps = sequences["timestamp"].to_numpy(dtype=np.int64)
    rows: dict[str, list[Any]] = {
        k: [] for k in ("user", "position", "history", "target", "timestamp")
    }
    for start, end in zip(*_user_bounds(users), strict=True):
        for i in range(min_history, end - start):
            at = start + i
            rows["user"].append(users[at])
            rows["position"].append(i)
            rows["history"].append(items[max(start, at - max_history) : at].tolist())
            rows["target"].append(int(items[at]))
            rows["timestamp"].append(int(stamps[at]))
    if not rows["user"]:
        longest = int(sequences.groupby("user").size().max()) if len(sequences) else 0
        raise DataError(
            f"prepare.min_history: no user has more than {min_history} interactions, so no "
            f"history is long enough (longest sequence: {longest} interactions); lower "
            "prepare.min_history or prepare.kcore"
        )
    return _samples_frame(rows)


def _samples_frame(rows: dict[str, list[Any]]) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "user": pd.Series(rows["user"], dtype="str"),
            "position": np.asarray(rows["position"], dtype=np.int64),
            "history": pd.Series(rows["history"], dtype=object),
            "target": np.asarray(rows["target"], dtype=np.int64),
            "timestamp": np.asarray(rows["timestamp"], dtype=np.int64),
        }
    )


def number_samples(samples: pd.DataFrame) -> pd.DataFrame:
    """Sort globally by (timestamp, user, position) and add ``sample_id`` = rank in that order."""
    ordered = samples.sort_values(_GLOBAL_ORDER, kind="stable").reset_index(drop=True)
    ordered.insert(0, "sample_id", np.arange(len(ordered), dtype=np.int64))
    return ordered


def split_samples(ordered: pd.DataFrame, cfg: PrepareConfig) -> dict[str, pd.DataFrame]:
    """Chronological cut of the globally ordered samples, or leave-one-out per user."""
    if cfg.split == "chronological":
        n = len(ordered)
        first = math.floor(n * cfg.train_ratio + 1e-9)
        second = math.floor(n * (cfg.train_ratio + cfg.valid_ratio) + 1e-9)
        parts = [ordered.iloc[:first], ordered.iloc[first:second], ordered.iloc[second:]]
    else:
        # Rows of a user are in position order, so counting from the end finds the last samples.
        from_end = ordered.groupby("user", sort=False).cumcount(ascending=False).to_numpy()
        parts = [ordered.loc[from_end >= 2], ordered.loc[from_end == 1], ordered.loc[from_end == 0]]
    return {name: part.reset_index(drop=True) for name, part in zip(SPLITS, parts, strict=True)}


def subsample(splits: dict[str, pd.DataFrame], cfg: PrepareConfig) -> dict[str, pd.DataFrame]:
    """Seeded subsample of each split (``{split}_samples``); kept rows stay in their order."""
    result = {}
    for index, name in enumerate(SPLITS):
        frame = splits[name]
        wanted = getattr(cfg, f"{name}_samples")
        if wanted is not None and wanted < len(frame):
            rng = np.random.default_rng([cfg.seed, index])
            chosen = np.sort(rng.choice(len(frame), size=wanted, replace=False))
            frame = frame.iloc[chosen].reset_index(drop=True)
        result[name] = frame
    return result


def require_nonempty(splits: dict[str, pd.DataFrame], cfg: PrepareConfig, context: str) -> None:
    """DataError naming the first split that is empty although its share is positive."""
    shares = dict(zip(SPLITS, cfg.split_ratios, strict=True))
    for name in SPLITS:
        wanted = cfg.split == "leave_one_out" or shares[name] > 0
        if wanted and splits[name].empty:
            raise DataError(
                f"the {name} split is empty after filtering ({context}; split={cfg.split}, "
                f"ratios {list(cfg.split_ratios)}); expected at least one sample: use more data "
                "or lower prepare.kcore / prepare.min_history"
            )
