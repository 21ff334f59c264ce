"""Ranked recommendation lists and the recommender protocol: what every recommender returns.

    recs = Recommendations.from_lists(sample_ids, ranked_items, ranked_scores, k=10)
    recs.items                    # [n, k] int64, best first, -1 = empty slot
    recs.reorder(other_ids)       # the same lists in another sample order

The LLM recommender, the item-ID baselines and the generative recommenders all implement
:class:`Recommender`; metrics and prediction files take :class:`Recommendations`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import numpy as np
import pandas as pd

from recbias.errors import RecbiasError


def align_sample_ids(
    reference: np.ndarray, other: np.ndarray, names: tuple[str, str] = ("run a", "run b")
) -> np.ndarray:
    """Index into ``other`` that puts its sample ids in the order of ``reference``.

    Raises RecbiasError when either side has duplicate ids or the id sets differ, naming how
    many ids each side lacks (``names`` label the two sides in the message).
    """
    reference, other = np.asarray(reference), np.asarray(other)
    for name, ids in zip(names, (reference, other), strict=True):
        if len(np.unique(ids)) != len(ids):
            raise RecbiasError(f"{name}: sample ids must be unique, found duplicates")
    lacking_in_other = np.setdiff1d(reference, other)
    lacking_in_ref = np.setdiff1d(other, reference)
    if lacking_in_other.size or lacking_in_ref.size:
        example = (lacking_in_other.tolist() + lacking_in_ref.tolist())[:3]
        raise RecbiasError(
            f"sample ids differ: {names[1]} lacks {lacking_in_other.size} ids of {names[0]} and "
            f"{names[0]} lacks {lacking_in_ref.size} ids of {names[1]} (e.g. {example})"
        )
    order = np.argsort(other, kind="stable")
    return order[np.searchsorted(other[order], reference)]


@dataclass(frozen=True, eq=False)
class Recommendations:
    """Ranked top-k lists for n samples.

    items: [n, k] int64 item ids, best first; −1 = empty slot or invalid output (a miss).
    scores: [n, k] float64, NaN for empty slots. sample_ids: [n] int64.
    """

    items: np.ndarray
    scores: np.ndarray
    sample_ids: np.ndarray

    def __post_init__(self) -> None:
        items = np.asarray(self.items, dtype=np.int64)
        scores = np.asarray(self.scores, dtype=np.float64)
        ids = np.asarray(self.sample_ids, dtype=np.int64)
        if items.ndim != 2 or scores.shape != items.shape or ids.shape != (items.shape[0],):
            raise ValueError(
                f"expected items [n, k], scores [n, k], sample_ids [n]; "
                f"got {items.shape}, {scores.shape}, {ids.shape}"
            )
        object.__setattr__(self, "items", items)
        object.__setattr__(self, "scores", scores)
        object.__setattr__(self, "sample_ids", ids)

    @property
    def k(self) -> int:
        return int(self.items.shape[1])

    def __len__(self) -> int:
        return int(self.items.shape[0])

    def reorder(self, sample_ids: np.ndarray) -> Recommendations:
        """The same lists in the order of ``sample_ids`` (an error names missing ids)."""
        idx = align_sample_ids(
            np.asarray(sample_ids), self.sample_ids, ("samples", "recommendations")
        )
        return Recommendations(self.items[idx], self.scores[idx], self.sample_ids[idx])

    @classmethod
    def from_lists(
        cls,
        sample_ids: Sequence[int],
        items: Sequence[Sequence[int]],
        scores: Sequence[Sequence[float]] | None,
        k: int,
    ) -> Recommendations:
        """Pad (or cut) ragged ranked lists to k slots with −1 / NaN."""
        out_items = np.full((len(items), k), -1, dtype=np.int64)
        out_scores = np.full((len(items), k), np.nan)
        for row, ranked in enumerate(items):
            m = min(len(ranked), k)
            out_items[row, :m] = ranked[:m]
            if scores is not None:
                out_scores[row, :m] = scores[row][:m]
        return cls(out_items, out_scores, np.asarray(sample_ids, dtype=np.int64))


@runtime_checkable
class Recommender(Protocol):
    """Anything that turns samples into ranked top-k lists."""

    name: str

    def recommend(self, samples: pd.DataFrame, k: int) -> Recommendations: ...
