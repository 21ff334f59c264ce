"""Recommenders the loop retrains every round, behind one small protocol.

    scorer = make_scorer(cfg.scorer, seed=0)
    scorer.fit(training_set, n_users, n_items)
    s = scorer.scores(np.arange(4096))      # Tensor [4096, n_items] (or [1, n_items] if shared)

* :class:`PopularityScorer` — ``log(weighted count + smoothing)``, one row shared by all users
  (``personalized = False``, so the loop broadcasts instead of scoring every user). With score
  temperature 1 the slate's top item is a draw from the empirical histogram: exactly the
  retraining model of Prop. 4.6 (paper 000).
* :class:`ALSScorer` — matrix factorisation by alternating least squares on the weighted
  user × item count matrix X (all entries observed, zeros included, PureSVD-like):
  ``U = X V (VᵀV + reg·I)⁻¹``, ``V = Xᵀ U (UᵀU + reg·I)⁻¹``, ``iterations`` sweeps per retrain,
  warm-started from the previous round (vectorised: sparse matmuls plus a d × d solve).
* :class:`SampleModelAdapter` — any object with ``fit(samples: DataFrame, n_items)`` and
  ``scores(samples) -> array/Tensor [n, n_items]`` (recbias' ``SASRecRecommender``; the LLM
  recommender once it exposes full-catalog ``scores``, a slow optional backend). Logs become
  sliding-window samples (``history`` = previous ``history_len`` items, ``target``); weights are
  ignored (a warning is logged if they are not uniform).
"""

from __future__ import annotations

import logging
from typing import Any, Protocol

import numpy as np
import pandas as pd
import scipy.sparse as sp
import torch
from torch import Tensor

from recbias.baselines.sasrec import SASRecRecommender
from recbias.errors import RecbiasError
from recbias.simulate.config import ScorerConfig
from recbias.simulate.logs import TrainingSet

log = logging.getLogger(__name__)


class Scorer(Protocol):
    """A recommender the simulator can retrain and query."""

    name: str
    personalized: bool  # False: scores() returns one row [1, n_items] shared by every user

    def fit(self, train: TrainingSet, n_users: int, n_items: int) -> None: ...

    def scores(self, users: np.ndarray) -> Tensor: ...


class PopularityScorer:
    name = "popularity"
    personalized = False

    def __init__(self, smoothing: float = 0.0) -> None:
        self.smoothing = smoothing
        self.row: Tensor | None = None  # [1, n_items]

    def fit(self, train: TrainingSet, n_users: int, n_items: int) -> None:
        counts = np.bincount(train.logs.items, weights=train.weights, minlength=n_items)
        with np.errstate(divide="ignore"):
            row = np.log(counts + self.smoothing).astype(np.float32)
        self.row = torch.from_numpy(row)[None, :]

    def scores(self, users: np.ndarray) -> Tensor:
        if self.row is None:
            raise RecbiasError("popularity scorer: call fit() before scores()")
        return self.row


class ALSScorer:
    name = "mf"
    personalized = True

    def __init__(self, dim: int, reg: float, iterations: int, seed: int) -> None:
        self.dim, self.reg, self.iterations, self.seed = dim, reg, iterations, seed
        self.user_f: np.ndarray | None = None  # [n_users, dim] float32
        self.item_f: np.ndarray | None = None  # [n_items, dim] float32
        self._item_t: Tensor | None = None

    def _solve(self, x: sp.csr_matrix, other: np.ndarray) -> np.ndarray:
        gram = other.T @ other + self.reg * np.eye(self.dim, dtype=np.float32)
        return np.linalg.solve(gram, np.asarray(x @ other).T).T.astype(np.float32)

    def fit(self, train: TrainingSet, n_users: int, n_items: int) -> None:
        logs = train.logs
        x = sp.csr_matrix(
            (train.weights, (logs.users, logs.items)), shape=(n_users, n_items), dtype=np.float32
        )  # duplicates are summed
        if self.item_f is None or self.item_f.shape[0] != n_items:
            rng = np.random.default_rng(self.seed)
            self.item_f = (rng.standard_normal((n_items, self.dim)) * 0.1).astype(np.float32)
        xt = x.T.tocsr()
        for _ in range(self.iterations):
            self.user_f = self._solve(x, self.item_f)
            self.item_f = self._solve(xt, self.user_f)
        self._item_t = torch.from_numpy(self.item_f)

    def scores(self, users: np.ndarray) -> Tensor:
        if self.user_f is None or self._item_t is None:
            raise RecbiasError("mf scorer: call fit() before scores()")
        return torch.from_numpy(self.user_f[users]) @ self._item_t.T


class SampleModelAdapter:
    """Wraps a ``fit(samples, n_items)`` / ``scores(samples)`` model (e.g. SASRec)."""

    personalized = True

    def __init__(self, model: Any, history_len: int, samples_per_user: int) -> None:
        self.model = model
        self.name = str(getattr(model, "name", type(model).__name__))
        self.history_len, self.samples_per_user = history_len, samples_per_user
        self._sequences: list[np.ndarray] = []

    def fit(self, train: TrainingSet, n_users: int, n_items: int) -> None:
        if not np.allclose(train.weights, train.weights[0]):
            log.warning("%s adapter: interaction weights are ignored", self.name)
        order = np.argsort(train.logs.users, kind="stable")  # keeps chronological order per user
        bounds = np.searchsorted(train.logs.users[order], np.arange(n_users + 1))
        items = train.logs.items[order]
        self._sequences = [items[bounds[u] : bounds[u + 1]] for u in range(n_users)]
        self.model.fit(self._samples(), n_items)

    def _samples(self) -> pd.DataFrame:
        rows: list[tuple[int, list[int], int]] = []
        for u, seq in enumerate(self._sequences):
            for t in range(max(1, len(seq) - self.samples_per_user), len(seq)):
                rows.append((u, seq[max(0, t - self.history_len) : t].tolist(), int(seq[t])))
        frame = pd.DataFrame(rows, columns=["user", "history", "target"])
        frame["sample_id"] = np.arange(len(frame))
        return frame

    def scores(self, users: np.ndarray) -> Tensor:
        hist = [self._sequences[u][-self.history_len :].tolist() for u in users]
        frame = pd.DataFrame({"user": users, "history": hist, "sample_id": np.arange(len(users))})
        out = self.model.scores(frame)
        return torch.as_tensor(np.asarray(out, dtype=np.float32))


def make_scorer(cfg: ScorerConfig, seed: int) -> Scorer:
    if cfg.name == "popularity":
        return PopularityScorer(cfg.smoothing)
    if cfg.name == "mf":
        return ALSScorer(cfg.dim, cfg.reg, cfg.iterations, seed)
    sas = SASRecRecommender(cfg.sasrec)
    return SampleModelAdapter(sas, cfg.history_len, cfg.samples_per_user)
