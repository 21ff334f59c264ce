"""Slates for every user, chunked: top-k, score temperature, exposure caps, ε-exploration.

    slates = recommend_all(scorer, n_users, n_items, k, mitigation, gen, chunk=4096)   # [n_users, k]

* Top-k: ``torch.topk`` on [chunk, n_items] score blocks; a non-personalised scorer's single row
  is ranked once and broadcast.
* Score temperature T > 0: slates are sampled without replacement from softmax(scores / T)
  (Gumbel-top-k, i.e. Plackett–Luce); T = 0 is the deterministic top-k.
* Exposure cap: an item may appear in at most ``cap = max(ceil(share · n_users),
  ceil(n_users · k / n_items))`` slates per round (the second term keeps the cap feasible). Users
  are served greedily in id order; an item that would exceed its cap is replaced by the user's
  next best item that is still available (:func:`capped_topk`).
* ε-exploration: afterwards every slot independently becomes a uniformly random item w.p. ε.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import Tensor

from recbias.simulate.config import MitigationConfig
from recbias.simulate.scorers import Scorer

INF = float("inf")


def gumbel_like(shape: tuple[int, ...], gen: torch.Generator) -> Tensor:
    u = torch.rand(shape, generator=gen).clamp_(1e-20, 1.0)
    return -torch.log(-torch.log(u))


def occurrence_rank(keys: Tensor) -> Tensor:
    """For each entry, how many earlier entries (in order) share its key: [m] → [m]."""
    order = torch.argsort(keys, stable=True)
    sorted_keys = keys[order]
    start = torch.ones_like(sorted_keys, dtype=torch.bool)
    start[1:] = sorted_keys[1:] != sorted_keys[:-1]
    pos = torch.arange(len(keys))
    group_start = torch.cummax(torch.where(start, pos, 0), dim=0).values
    rank = torch.empty_like(pos)
    rank[order] = pos - group_start
    return rank


def capped_topk(scores: Tensor, k: int, counts: Tensor, cap: int) -> Tensor:
    """Greedy capped top-k of one chunk; updates ``counts`` [n_items] in place. → [b, k]."""
    # -inf marks "unavailable" below, so a scorer's own -inf (e.g. unseen items) becomes finite
    s = torch.nan_to_num(scores, neginf=-1e30)
    s[:, counts >= cap] = -INF
    rows = torch.arange(s.shape[0])
    out = torch.empty((s.shape[0], k), dtype=torch.int64)
    while len(rows):
        vals, idx = torch.topk(s[rows], k, dim=1)
        new = ~torch.isposinf(vals)
        keys = torch.where(new, idx, -1 - torch.arange(idx.numel()).view_as(idx))
        rank = occurrence_rank(keys.reshape(-1)).view_as(idx)
        ok = new & ((counts[idx] + rank < cap) | torch.isneginf(vals))
        counts += torch.bincount(idx[ok], minlength=len(counts))
        bad = (new & ~ok).any(dim=1)
        out[rows[~bad]] = idx[~bad]
        if not bad.any():
            break
        sub = s[rows[bad]]
        sub[:, counts >= cap] = -INF
        keep = (ok | ~new)[bad]  # accepted now or earlier: pinned at +inf so they stay
        sub.scatter_(1, idx[bad], torch.where(keep, INF, sub.gather(1, idx[bad])))
        s[rows[bad]] = sub
        rows = rows[bad]
    return out


def _cap_count(share: float, n_users: int, k: int, n_items: int) -> int:
    return max(math.ceil(share * n_users), math.ceil(n_users * k / n_items))


def _chunk_slates(
    s: Tensor, k: int, mit: MitigationConfig, gen: torch.Generator, counts: Tensor | None, cap: int
) -> Tensor:
    if mit.temperature > 0:
        s = s / mit.temperature + gumbel_like(tuple(s.shape), gen)
    if counts is not None:
        return capped_topk(s, k, counts, cap)
    return torch.topk(s, k, dim=1).indices


def recommend_all(
    scorer: Scorer,
    n_users: int,
    n_items: int,
    k: int,
    mit: MitigationConfig,
    gen: torch.Generator,
    chunk: int,
) -> Tensor:
    """Slates of every user: [n_users, k] int64 (see the module docstring)."""
    capped = mit.exposure_cap < 1.0
    stochastic = mit.temperature > 0 or capped
    if not scorer.personalized and not stochastic:
        row = torch.topk(scorer.scores(np.arange(1)), k, dim=1).indices
        slates = row.expand(n_users, k).clone()
    else:
        parts = []
        counts = torch.zeros(n_items, dtype=torch.int64) if capped else None
        cap = _cap_count(mit.exposure_cap, n_users, k, n_items)
        for start in range(0, n_users, chunk):
            users = np.arange(start, min(start + chunk, n_users))
            s = scorer.scores(users).float().expand(len(users), -1)
            parts.append(_chunk_slates(s, k, mit, gen, counts, cap))
        slates = torch.cat(parts)
    return explore(slates, mit.epsilon, n_items, gen)


def explore(slates: Tensor, epsilon: float, n_items: int, gen: torch.Generator) -> Tensor:
    """Replace each slot by a uniformly random item with probability ε: [n, k] → [n, k]."""
    if epsilon <= 0:
        return slates
    mask = torch.rand(slates.shape, generator=gen) < epsilon
    random_items = torch.randint(n_items, slates.shape, generator=gen)
    return torch.where(mask, random_items, slates)
