"""Simulated worlds: users' organic (true) utilities, item groups and the round-0 logs.

Both worlds share one representation, so the loop never materialises the full utility matrix:

    utility[u, i] = user_factors[u] · item_factors[i]        (user_factors: [n_users, d'],
                                                              item_factors: [n_items, d'])

* :func:`synthetic_world` — item popularity follows a Zipf law (a bias column ``-zipf·log rank``
  with the ranks randomly permuted) plus a user-item affinity ``affinity · <a_u, b_i>`` with
  Gaussian latent factors. Item groups (for the drift metric) are each item's dominant latent
  dimension. Round-0 logs are ``initial_interactions`` organic logit draws per user.
* :func:`dataset_world` — a recbias :class:`PreparedDataset`. Our choice, documented: a user's
  organic utility of a movie is ``genre_weight · <g_u, h_i> + popularity_weight · log(1 + n_i)``
  where ``g_u`` is the user's genre distribution over **all** their interactions (train, valid and
  held-out test), ``h_i`` the item's genre indicator normalised to sum 1 and ``n_i`` the item's
  interaction count. Item group = first listed genre. Round-0 logs = the train split (every
  history item and target of the user, first appearance order, each (user, item) once).

    world = synthetic_world(cfg.world, seed=0)
    util = world.utilities(np.arange(100))          # Tensor [100, n_items]
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
from torch import Tensor

from recbias.data.dataset import PreparedDataset
from recbias.errors import DataError
from recbias.simulate.config import WorldConfig


@dataclass
class World:
    """Users, items, organic utilities (factorised) and the round-0 organic logs."""

    user_factors: Tensor  # [n_users, d'] float32
    item_factors: Tensor  # [n_items, d'] float32
    item_groups: np.ndarray  # [n_items] int64 in [0, n_groups)
    n_groups: int
    initial_users: np.ndarray  # [m0] int64
    initial_items: np.ndarray  # [m0] int64

    @property
    def n_users(self) -> int:
        return int(self.user_factors.shape[0])

    @property
    def n_items(self) -> int:
        return int(self.item_factors.shape[0])

    def utilities(self, users: np.ndarray) -> Tensor:
        """Organic utilities of ``users`` for every item: [len(users), n_items] float32."""
        return self.user_factors[torch.as_tensor(users)] @ self.item_factors.T

    def slate_utilities(self, users: np.ndarray, slates: Tensor) -> Tensor:
        """Utilities of the slate items only: users [b], slates [b, k] → [b, k]."""
        u = self.user_factors[torch.as_tensor(users)]  # [b, d']
        return torch.einsum("bd,bkd->bk", u, self.item_factors[slates])


def _zipf_bias(n_items: int, zipf: float, rng: np.random.Generator) -> np.ndarray:
    ranks = rng.permutation(n_items) + 1
    return (-zipf * np.log(ranks)).astype(np.float32)


def synthetic_world(cfg: WorldConfig, seed: int, chunk_size: int = 4096) -> World:
    """A seeded Zipf + latent-factor world; scales to 100k users × 10k items (chunked draws)."""
    rng = np.random.default_rng(seed)
    d = cfg.dim
    a = rng.standard_normal((cfg.n_users, d), dtype=np.float32) / np.sqrt(d)
    b = rng.standard_normal((cfg.n_items, d), dtype=np.float32)
    bias = _zipf_bias(cfg.n_items, cfg.zipf, rng)
    users = np.concatenate([cfg.affinity * a, np.ones((cfg.n_users, 1), np.float32)], axis=1)
    items = np.concatenate([b, bias[:, None]], axis=1)
    world = World(
        user_factors=torch.from_numpy(users.astype(np.float32)),
        item_factors=torch.from_numpy(items.astype(np.float32)),
        item_groups=np.argmax(b, axis=1).astype(np.int64),
        n_groups=d,
        initial_users=np.empty(0, np.int64),
        initial_items=np.empty(0, np.int64),
    )
    gen = torch.Generator().manual_seed(seed + 1)
    draws = sample_logit(world, cfg.initial_interactions, 1.0, gen, chunk_size)  # [n_users, m]
    world.initial_users = np.repeat(np.arange(cfg.n_users), cfg.initial_interactions)
    world.initial_items = draws.reshape(-1).numpy().astype(np.int64)
    return world


def sample_logit(world: World, n: int, temperature: float, gen: torch.Generator, chunk: int):
    """``n`` i.i.d. draws per user from softmax(utility / temperature): [n_users, n] int64."""
    out = []
    for start in range(0, world.n_users, chunk):
        users = np.arange(start, min(start + chunk, world.n_users))
        logits = world.utilities(users) / temperature
        probs = torch.softmax(logits, dim=1)
        out.append(torch.multinomial(probs, n, replacement=True, generator=gen))
    return torch.cat(out)


def _user_ids(ds: PreparedDataset) -> dict[str, int]:
    users = pd.concat([ds.split(s)["user"] for s in ("train", "valid", "test")]).unique()
    return {u: i for i, u in enumerate(users)}


def _interactions(frame: pd.DataFrame, index: dict[str, int]) -> pd.DataFrame:
    """(user, item) pairs of every history entry and target, first-appearance order, deduped."""
    frame = frame.sort_values("timestamp", kind="stable")
    hist = frame[["user", "history"]].explode("history").dropna()
    pairs = pd.concat(
        [
            pd.DataFrame({"user": hist["user"], "item": hist["history"]}),
            pd.DataFrame({"user": frame["user"], "item": frame["target"]}),
        ]
    ).drop_duplicates()
    return pd.DataFrame(
        {
            "user": pairs["user"].map(index).to_numpy(np.int64),
            "item": pairs["item"].astype(np.int64),
        }
    )


def _genre_matrix(ds: PreparedDataset) -> tuple[np.ndarray, np.ndarray, int]:
    """(item genre distribution [n_items, n_genres], first-genre group [n_items], n_genres)."""
    if "genres" not in ds.items.columns:
        raise DataError(f"{ds.path}: items table has no 'genres' column (needed by the world)")
    lists = [list(g) if g is not None and len(g) else ["(none)"] for g in ds.items["genres"]]
    names = sorted({g for gs in lists for g in gs})
    col = {g: j for j, g in enumerate(names)}
    h = np.zeros((len(lists), len(names)), np.float32)
    for i, gs in enumerate(lists):
        h[i, [col[g] for g in gs]] = 1.0 / len(gs)
    groups = np.array([col[gs[0]] for gs in lists], np.int64)
    return h, groups, len(names)


def dataset_world(cfg: WorldConfig, ds: PreparedDataset) -> World:
    """The ML-100K-style world described in the module docstring."""
    index = _user_ids(ds)
    everything = _interactions(pd.concat([ds.split(s) for s in ("train", "valid", "test")]), index)
    initial = _interactions(ds.split("train"), index)
    h, groups, n_genres = _genre_matrix(ds)
    n_users, n_items = len(index), len(ds.items)
    counts = np.bincount(everything["item"], minlength=n_items).astype(np.float32)
    g = np.zeros((n_users, n_genres), np.float32)
    np.add.at(g, everything["user"].to_numpy(), h[everything["item"].to_numpy()])
    g /= np.maximum(g.sum(axis=1, keepdims=True), 1e-12)
    users = np.concatenate([cfg.genre_weight * g, np.ones((n_users, 1), np.float32)], axis=1)
    items = np.concatenate([h, cfg.popularity_weight * np.log1p(counts)[:, None]], axis=1)
    return World(
        user_factors=torch.from_numpy(users.astype(np.float32)),
        item_factors=torch.from_numpy(items.astype(np.float32)),
        item_groups=groups,
        n_groups=n_genres,
        initial_users=initial["user"].to_numpy(),
        initial_items=initial["item"].to_numpy(),
    )
