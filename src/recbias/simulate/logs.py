"""Interaction logs of the closed loop and the training weights derived from them.

    logs = Logs.initial(world.initial_users, world.initial_items)
    logs = logs.append(round_logs) if mode == "accumulate" else round_logs
    w = training_weights(logs, anchor, mitigation, state)     # [m] float32, mean 1

Weights (documented choices, see :class:`recbias.simulate.config.MitigationConfig`):

* ``organic_share = ρ > 0``: the round-0 organic logs are always part of the training set and
  carry exactly a share ρ of the total training weight (in replace mode they are appended).
* ``inverse_popularity`` (IGD-style flattening): an interaction with item i weighs
  ``count_i ** -power`` where ``count_i`` is i's count in the training logs.
* ``group_dro`` (GDRT-style): items are split into ``dro_groups`` popularity groups by round-0
  counts (equal numbers of round-0 interactions per group, head first). Group weights q live on
  the simplex and follow exponentiated gradient on the group "loss" ``log(organic share /
  logged share)`` (how much the logs under-represent the group relative to round 0):
  ``q_g ← q_g · exp(step · loss_g)``, renormalised. Each group then gets total weight ∝ q_g.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from recbias.simulate.config import MitigationConfig


@dataclass
class Logs:
    """Logged interactions in chronological order (all arrays have the same length m)."""

    users: np.ndarray  # [m] int64
    items: np.ndarray  # [m] int64
    rounds: np.ndarray  # [m] int32, 0 = initial organic logs
    delegated: np.ndarray  # [m] bool, True = the user took the recommender's item

    @classmethod
    def initial(cls, users: np.ndarray, items: np.ndarray) -> Logs:
        m = len(users)
        return cls(
            np.asarray(users, np.int64),
            np.asarray(items, np.int64),
            np.zeros(m, np.int32),
            np.zeros(m, bool),
        )

    def __len__(self) -> int:
        return len(self.users)

    def append(self, other: Logs) -> Logs:
        return Logs(
            np.concatenate([self.users, other.users]),
            np.concatenate([self.items, other.items]),
            np.concatenate([self.rounds, other.rounds]),
            np.concatenate([self.delegated, other.delegated]),
        )


@dataclass
class TrainingSet:
    """What a scorer is fitted on: the logs plus one weight per interaction (mean 1)."""

    logs: Logs
    weights: np.ndarray  # [m] float32


@dataclass
class DroState:
    """Group-DRO state carried across rounds: item → group and the group weights q."""

    item_groups: np.ndarray  # [n_items] int64
    reference: np.ndarray  # [G] round-0 share of each group
    q: np.ndarray = field(default_factory=lambda: np.empty(0))


def popularity_groups(counts: np.ndarray, n_groups: int) -> np.ndarray:
    """Group of each item, 0 = head: equal shares of the interactions per group. [n] → [n]."""
    order = np.argsort(-counts, kind="stable")
    cum = np.cumsum(counts[order]) / max(counts.sum(), 1)
    groups = np.empty(len(counts), np.int64)
    groups[order] = np.minimum((cum * n_groups - 1e-9).clip(0).astype(np.int64), n_groups - 1)
    return groups


def dro_state(anchor: Logs, n_items: int, n_groups: int) -> DroState:
    counts = np.bincount(anchor.items, minlength=n_items)
    groups = popularity_groups(counts, n_groups)
    ref = np.bincount(groups, weights=counts, minlength=n_groups) / max(counts.sum(), 1)
    return DroState(groups, ref, np.full(n_groups, 1.0 / n_groups))


def _dro_weights(logs: Logs, state: DroState, step: float) -> np.ndarray:
    g = state.item_groups[logs.items]
    n_groups = len(state.reference)
    share = np.bincount(g, minlength=n_groups) / max(len(g), 1)
    loss = np.log((state.reference + 1e-9) / (share + 1e-9))
    q = state.q * np.exp(step * loss)
    state.q = q / q.sum()
    per_group = state.q / np.maximum(np.bincount(g, minlength=n_groups), 1)
    return per_group[g]


def _mean_one(w: np.ndarray) -> np.ndarray:
    return (w * (len(w) / max(w.sum(), 1e-12))).astype(np.float32)


def training_set(
    logs: Logs, anchor: Logs, mit: MitigationConfig, n_items: int, dro: DroState | None
) -> TrainingSet:
    """Apply the organic anchor and the reweighting of ``mit`` to ``logs``."""
    if mit.organic_share > 0:
        logs = _with_anchor(logs, anchor)
    if mit.reweight == "inverse_popularity":
        counts = np.bincount(logs.items, minlength=n_items).astype(np.float64)
        w = counts[logs.items] ** -mit.reweight_power
    elif mit.reweight == "group_dro":
        assert dro is not None, "group_dro needs a DroState"
        w = _dro_weights(logs, dro, mit.dro_step)
    else:
        w = np.ones(len(logs))
    if mit.organic_share > 0:
        w = _anchor_share(w, logs.rounds == 0, mit.organic_share)
    return TrainingSet(logs, _mean_one(w))


def _with_anchor(logs: Logs, anchor: Logs) -> Logs:
    """``logs`` with the round-0 organic logs present exactly once."""
    return logs if (logs.rounds == 0).any() else anchor.append(logs)


def _anchor_share(w: np.ndarray, is_anchor: np.ndarray, share: float) -> np.ndarray:
    a, rest = w[is_anchor].sum(), w[~is_anchor].sum()
    if a == 0 or rest == 0:
        return w
    return np.where(is_anchor, w * share / a, w * (1 - share) / rest)
