"""Training units of the causal sequence models: one forward pass, one or more supervised samples.

A sample's *window* is the last ``max_len`` items of its history. Sample A **rides on** sample B
when A's window + target is a prefix of B's window + target: a causal net's state at position
``len(A's window) - 1`` of B's pass is then exactly A's state, and its next item is A's target.
RecBole's leave-one-out augmentation makes every prefix of a user's first ``max_len`` items a
sample, so on ML-100K those ~38k samples ride on 943 passes (97,171 samples -> ~59k units).

Grouping: sort the rows ``window + [target]`` (right-padded with -1) lexicographically; a row
that is a prefix of any row is a prefix of the next one, so each row rides on the root of its
successor's chain (the first later row that is a prefix of nothing). Exact duplicates share a
position, counted in ``weights``. A sample with an empty history is a unit of its own.

    units = build_units(histories, targets, n_items=1682, max_len=50, shared=True)
    units.seqs     # [U, max_len] item id + 1, right-padded with 0
    units.targets  # [U, max_len] target item of the samples read at each position (-1: none)
    units.weights  # [U, max_len] number of samples read at each position (float)
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from recbias.errors import DataError


def _windows(histories: list, n_items: int, max_len: int) -> tuple[np.ndarray, np.ndarray]:
    """``[n, max_len + 1]`` rows ``window`` right-padded with -1, and the window lengths ``[n]``."""
    rows = np.full((len(histories), max_len + 1), -1, dtype=np.int64)
    lengths = np.zeros(len(histories), dtype=np.int64)
    for row, hist in enumerate(histories):
        items = np.asarray(hist, dtype=np.int64)[-max_len:]
        if items.size and (items.min() < 0 or items.max() >= n_items):
            raise DataError(f"samples: history of row {row} holds item ids outside [0, {n_items})")
        rows[row, : items.size] = items
        lengths[row] = items.size
    return rows, lengths


def history_tensor(histories: list, n_items: int, max_len: int) -> Tensor:
    """``[n, max_len]`` of the last ``max_len`` items + 1 (oldest first), right-padded with 0."""
    rows, _ = _windows(histories, n_items, max_len)
    return torch.from_numpy(rows[:, :max_len] + 1)


def trim(seq: Tensor) -> Tensor:
    """Drop the trailing columns that are padding in every row (keeps at least one column)."""
    width = int((seq > 0).sum(dim=1).max()) if len(seq) else 1
    return seq[:, : max(width, 1)]


@dataclass(frozen=True)
class TrainUnits:
    """Forward passes with the samples each one supervises (see the module docstring)."""

    seqs: Tensor  # [U, W] long, item id + 1, right-padded with 0
    targets: Tensor  # [U, W] long, -1 where no sample is read
    weights: Tensor  # [U, W] float, samples read at each position

    def __len__(self) -> int:
        return len(self.seqs)

    @property
    def counts(self) -> Tensor:
        """``[U]`` long: samples per unit."""
        return self.weights.sum(dim=1).round().long()

    @property
    def widths(self) -> Tensor:
        """``[U]`` long: columns a unit needs (its last supervised position + 1)."""
        cols = torch.arange(1, self.weights.shape[1] + 1)
        return ((self.weights > 0) * cols).amax(dim=1)

    def select(self, idx: Tensor, trim_to_width: bool = True) -> TrainUnits:
        """Units ``idx``; with ``trim_to_width``, only the columns the widest of them needs."""
        width = int(self.widths[idx].max()) if trim_to_width else self.seqs.shape[1]
        cols = slice(0, max(width, 1))
        return TrainUnits(self.seqs[idx, cols], self.targets[idx, cols], self.weights[idx, cols])

    def to(self, device: str | torch.device) -> TrainUnits:
        return TrainUnits(self.seqs.to(device), self.targets.to(device), self.weights.to(device))


def prefix_roots(rows: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """Index of the row each row rides on (itself if none). rows: [n, L+1] padded with -1."""
    order = np.lexsort(rows.T[::-1])  # lexicographic; -1 padding puts a prefix first
    ordered = rows[order]
    is_prefix = np.zeros(len(rows), dtype=bool)
    if len(rows) > 1:
        is_prefix[:-1] = ((ordered[:-1] == ordered[1:]) | (ordered[:-1] == -1)).all(axis=1)
    is_prefix &= lengths[order] > 0  # an empty history has no position in a longer pass
    # Root of position i = the first position j >= i that is a prefix of nothing.
    positions = np.arange(len(rows))
    stop = np.where(is_prefix, len(rows), positions)
    root_pos = np.minimum.accumulate(stop[::-1])[::-1]
    roots = np.empty(len(rows), dtype=np.int64)
    roots[order] = order[root_pos]
    return roots


def _check_targets(targets: np.ndarray, n_items: int) -> None:
    if len(targets) and (targets.min() < 0 or targets.max() >= n_items):
        raise DataError(f"samples: column 'target' holds item ids outside [0, {n_items})")


def build_units(
    histories: list, targets: np.ndarray, n_items: int, max_len: int, shared: bool = True
) -> TrainUnits:
    """Training units for ``(history, target)`` samples; ``shared=False``: one per sample."""
    targets = np.asarray(targets, dtype=np.int64)
    _check_targets(targets, n_items)
    rows, lengths = _windows(histories, n_items, max_len)
    rows[np.arange(len(rows)), lengths] = targets
    roots = prefix_roots(rows, lengths) if shared else np.arange(len(rows))
    unit_roots, unit_of = np.unique(roots, return_inverse=True)
    position = np.maximum(lengths - 1, 0)
    full = rows[unit_roots]
    full[np.arange(len(unit_roots)), lengths[unit_roots]] = -1  # the root's target is no input
    seqs = full[:, :max_len] + 1  # -1 padding -> 0
    unit_targets = np.full(seqs.shape, -1, dtype=np.int64)
    unit_targets[unit_of, position] = targets
    weights = np.zeros(seqs.shape, dtype=np.float32)
    np.add.at(weights, (unit_of, position), 1.0)
    return TrainUnits(
        torch.from_numpy(seqs), torch.from_numpy(unit_targets), torch.from_numpy(weights)
    )
