"""Most-popular baseline: recommend the items seen most often in training.

Example::

    pop = PopularityRecommender(exclude_history=True).fit(train, n_items=len(titles))
    recs = pop.recommend(test, k=10)   # scores are training counts
    pop.item_counts                    # [n_items] popularity, reused by bias metrics
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, Self

import numpy as np
import pandas as pd

from recbias.errors import DataError, RecbiasError
from recbias.recs import Recommendations

CountMode = Literal["targets", "interactions"]


def _ids(values: np.ndarray, n_items: int, column: str) -> np.ndarray:
    values = np.asarray(values, dtype=np.int64)
    if values.size and (values.min() < 0 or values.max() >= n_items):
        raise DataError(f"samples: column {column!r} holds item ids outside [0, {n_items})")
    return values


def _flat_histories(samples: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """(row index [m], item id [m]) for every history entry of every sample."""
    histories = samples["history"].tolist()
    lengths = np.fromiter((len(h) for h in histories), dtype=np.int64, count=len(histories))
    rows = np.repeat(np.arange(len(histories)), lengths)
    items = np.concatenate([np.asarray(h, dtype=np.int64) for h in histories] or [np.empty(0)])
    return rows, items.astype(np.int64)


def count_items(samples: pd.DataFrame, n_items: int, count: CountMode = "targets") -> np.ndarray:
    """Popularity of each item: [n_items] int64.

    ``"targets"``: how often the item is a sample's target. ``"interactions"``: how many users
    interacted with it, counting each (user, item) pair once over histories and targets
    (sliding-window samples repeat the same interaction in many histories).
    """
    targets = _ids(samples["target"].to_numpy(), n_items, "target")
    if count == "targets":
        return np.bincount(targets, minlength=n_items).astype(np.int64)
    if count != "interactions":
        raise ValueError(f"count must be 'targets' or 'interactions', got {count!r}")
    rows, hist = _flat_histories(samples)
    hist = _ids(hist, n_items, "history")
    users = samples["user"].to_numpy()
    pairs = pd.DataFrame(
        {
            "user": np.concatenate([users[rows], users]),
            "item": np.concatenate([hist, targets]),
        }
    ).drop_duplicates()
    return np.bincount(pairs["item"].to_numpy(), minlength=n_items).astype(np.int64)


def popularity_order(counts: np.ndarray) -> np.ndarray:
    """Item ids by decreasing count; ties go to the smaller id. [n_items] → [n_items]."""
    return np.argsort(-np.asarray(counts), kind="stable")


def _drop_history(order: np.ndarray, samples: pd.DataFrame, k: int) -> np.ndarray:
    """Top-k of ``order`` per sample without the sample's history items: [n, k], −1 padded.

    A sample loses at most len(history) items, so only the first k + max_len candidates matter.
    """
    rows, hist = _flat_histories(samples)
    max_len = int(np.bincount(rows, minlength=len(samples)).max(initial=0))
    cand = order[: k + max_len]
    position = np.full(len(order), len(cand), dtype=np.int64)
    position[cand] = np.arange(len(cand))
    hist = _ids(hist, len(order), "history")
    seen = np.zeros((len(samples), len(cand) + 1), dtype=bool)  # last column absorbs non-candidates
    seen[rows, position[hist]] = True
    seen = seen[:, :-1]
    keep = np.argsort(seen, axis=1, kind="stable")[:, :k]  # unseen candidates first, in order
    picked = cand[keep]
    return np.where(np.take_along_axis(seen, keep, axis=1), -1, picked)


@dataclass
class PopularityRecommender:
    """Ranks items by training popularity (see ``count_items``), the same list for every user.

    With ``exclude_history`` a sample's history items are removed from its list.
    """

    exclude_history: bool = False
    count: CountMode = "targets"
    name: str = "popularity"
    item_counts: np.ndarray | None = field(default=None, init=False, repr=False)

    def fit(self, train_samples: pd.DataFrame, n_items: int) -> Self:
        self.item_counts = count_items(train_samples, n_items, self.count)
        return self

    def recommend(self, samples: pd.DataFrame, k: int) -> Recommendations:
        if self.item_counts is None:
            raise RecbiasError(f"{self.name}: call fit() before recommend()")
        order = popularity_order(self.item_counts)
        if self.exclude_history:
            items = _drop_history(order, samples, k)
        else:
            items = np.tile(order[:k], (len(samples), 1))
        items = np.pad(items, ((0, 0), (0, k - items.shape[1])), constant_values=-1)
        scores = np.where(items >= 0, self.item_counts[np.maximum(items, 0)], np.nan)
        return Recommendations(items, scores, samples["sample_id"].to_numpy())
