"""Shared pieces of the item-ID sequential recommenders (SASRec, GRU4Rec): config, loss, loop.

A sequence net maps left-padded histories ``seq [B, W]`` (item id + 1, 0 = padding, the most
recent item in the last column) to a state ``[B, D]`` (``encode``) and owns item vectors
``[n_items, D]`` (``item_weights``); its score for an item is their dot product. Training is one
(history -> target) pair per sample, as RecBole trains its sequential models:

* ``loss = "ce"``: softmax cross-entropy over the full catalog.
* ``loss = "bce"``: the SASRec paper's sampled binary cross-entropy, ``-log σ(s_pos) -
  Σ log(1 - σ(s_neg))`` over ``negatives`` items drawn uniformly from the catalog **minus the
  target** (never the positive; history items may be drawn).

With ``bucket`` on, each epoch sorts a random permutation by history length, cuts it into
batches and shuffles the batches, so a batch only carries the columns its longest history needs
(left padding never changes a net's output, see the nets' tests).

    recommender = SASRecRecommender(SASRecConfig(loss="bce")).fit(train, n_items=1682)
    recommender.scores(test)        # [n, n_items] float32 logits
    recommender.recommend(test, 10) # Recommendations, ties to the smaller item id
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import ClassVar, Protocol, Self

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from recbias.errors import ConfigError, DataError, RecbiasError
from recbias.evaluation.predictions import Recommendations

log = logging.getLogger(__name__)
LOSSES = ("ce", "bce")


@dataclass
class SeqTrainConfig:
    """Training fields shared by the sequential baselines (subclasses add the architecture)."""

    KEY: ClassVar[str] = "baselines.seq"
    max_len: int = field(default=10, metadata={"help": "history window (most recent items)"})
    dropout: float = field(default=0.2, metadata={"help": "dropout rate"})
    epochs: int = field(default=20, metadata={"help": "passes over the training samples"})
    lr: float = field(default=1e-3, metadata={"help": "Adam learning rate"})
    batch_size: int = field(default=256, metadata={"help": "samples per step"})
    loss: str = field(
        default="ce",
        metadata={"help": "ce (full softmax) or bce (sampled negatives, the SASRec paper's)"},
    )
    negatives: int = field(default=1, metadata={"help": "bce: negatives drawn per sample"})
    bucket: bool = field(
        default=True,
        metadata={"help": "batch samples of similar history length and drop all-padding columns"},
    )
    seed: int = field(default=0, metadata={"help": "initialisation, shuffling and dropout"})
    exclude_history: bool = field(
        default=False, metadata={"help": "never recommend an item of the sample's history"}
    )
    device: str = field(default="cpu", metadata={"help": "torch device for training and scoring"})

    def _fail(self, key: str, expected: str) -> ConfigError:
        return ConfigError(
            f"config key '{self.KEY}.{key}': must be {expected}, got {getattr(self, key)!r}"
        )

    def _check_positive(self, *keys: str) -> None:
        for key in keys:
            if getattr(self, key) < 1:
                raise self._fail(key, ">= 1")

    def validate(self) -> None:
        self._check_positive("max_len", "epochs", "batch_size", "negatives")
        if not 0.0 <= self.dropout < 1.0:
            raise self._fail("dropout", "in [0, 1)")
        if self.lr <= 0:
            raise self._fail("lr", "> 0")
        if self.loss not in LOSSES:
            raise self._fail("loss", "one of " + ", ".join(LOSSES))


class SequenceNet(Protocol):
    def encode(self, seq: Tensor) -> Tensor: ...  # [B, W] -> [B, D]
    def item_weights(self) -> Tensor: ...  # [n_items, D]


def history_tensor(histories: list, n_items: int, max_len: int) -> Tensor:
    """``[n, max_len]`` of the last ``max_len`` items + 1, left-padded with 0."""
    out = torch.zeros((len(histories), max_len), dtype=torch.long)
    for row, hist in enumerate(histories):
        items = np.asarray(hist, dtype=np.int64)[-max_len:]
        if items.size and (items.min() < 0 or items.max() >= n_items):
            raise DataError(f"samples: history of row {row} holds item ids outside [0, {n_items})")
        if items.size:
            out[row, max_len - items.size :] = torch.from_numpy(items + 1)
    return out


def trim(seq: Tensor) -> Tensor:
    """Drop the leading columns that are padding in every row (keeps at least one column)."""
    width = int((seq > 0).sum(dim=1).max()) if len(seq) else 1
    return seq[:, seq.shape[1] - max(width, 1) :]


def top_k(scores: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Best ``k`` items per row of ``scores [n, n_items]``; ties go to the smaller item id.

    -> ``items [n, k]`` (-1 where the score is -inf, i.e. excluded) and ``values [n, k]`` (NaN).
    """
    items = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    values = np.take_along_axis(scores, items, axis=1).astype(np.float64)
    blocked = ~np.isfinite(values)
    items = np.where(blocked, -1, items)
    values = np.where(blocked, np.nan, values)
    pad = k - items.shape[1]
    return (
        np.pad(items, ((0, 0), (0, pad)), constant_values=-1),
        np.pad(values, ((0, 0), (0, pad)), constant_values=np.nan),
    )


def sample_negatives(targets: Tensor, n_items: int, count: int, gen: torch.Generator) -> Tensor:
    """``[B, count]`` item ids uniform over the catalog without each row's target."""
    draw = torch.randint(0, n_items - 1, (len(targets), count), generator=gen)
    return draw + (draw >= targets[:, None]).long()


def bce_loss(state: Tensor, items: Tensor, targets: Tensor, negatives: Tensor) -> Tensor:
    """Mean over the batch of ``softplus(-s_pos) + Σ_neg softplus(s_neg)``.

    state: [B, D], items: [n_items, D], targets: [B], negatives: [B, m].
    """
    pos = (state * items[targets]).sum(-1)
    neg = torch.einsum("bd,bmd->bm", state, items[negatives])
    return (F.softplus(-pos) + F.softplus(neg).sum(-1)).mean()


def batch_loss(net: SequenceNet, seq: Tensor, targets: Tensor, negatives: Tensor | None) -> Tensor:
    state = net.encode(seq)
    if negatives is None:
        return F.cross_entropy(state @ net.item_weights().T, targets)
    return bce_loss(state, net.item_weights(), targets, negatives)


def epoch_batches(lengths: Tensor, cfg: SeqTrainConfig, gen: torch.Generator) -> list[Tensor]:
    """Sample indices per batch for one epoch (length-bucketed when ``cfg.bucket``)."""
    perm = torch.randperm(len(lengths), generator=gen)
    if not cfg.bucket:
        return list(perm.split(cfg.batch_size))
    perm = perm[torch.sort(lengths[perm], stable=True).indices]
    batches = perm.split(cfg.batch_size)
    return [batches[i] for i in torch.randperm(len(batches), generator=gen).tolist()]


def train_epochs(
    net: nn.Module, seqs: Tensor, targets: Tensor, n_items: int, cfg: SeqTrainConfig
) -> tuple[list[float], list[float]]:
    """Adam (β = 0.9, 0.98) over ``seqs [N, max_len]`` -> (mean loss, seconds) per epoch."""
    opt = torch.optim.Adam(net.parameters(), lr=cfg.lr, betas=(0.9, 0.98))
    gen = torch.Generator().manual_seed(cfg.seed)
    lengths = (seqs > 0).sum(dim=1)
    losses, seconds = [], []
    net.train()
    for epoch in range(cfg.epochs):
        start, total = time.perf_counter(), torch.zeros(())
        for idx in epoch_batches(lengths, cfg, gen):
            batch_targets = targets[idx]
            negatives = None
            if cfg.loss == "bce":
                negatives = sample_negatives(batch_targets, n_items, cfg.negatives, gen)
                negatives = negatives.to(cfg.device)
            seq = trim(seqs[idx]) if cfg.bucket else seqs[idx]
            loss = batch_loss(net, seq.to(cfg.device), batch_targets.to(cfg.device), negatives)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            total += loss.detach().cpu() * len(idx)
        losses.append(float(total) / len(targets))
        seconds.append(time.perf_counter() - start)
        log.debug("epoch %d: loss %.4f, %.1f s", epoch, losses[-1], seconds[-1])
    return losses, seconds


def _check_targets(targets: Tensor, n_items: int, name: str) -> None:
    if len(targets) == 0:
        raise DataError(f"{name}: no training samples")
    if int(targets.min()) < 0 or int(targets.max()) >= n_items:
        raise DataError(f"samples: column 'target' holds item ids outside [0, {n_items})")


class SequenceRecommender:
    """A sequence net behind the ``Recommender`` protocol; subclasses implement ``build_net``."""

    name = "sequence"

    def __init__(self, cfg: SeqTrainConfig) -> None:
        self.cfg = cfg
        self.cfg.validate()
        self.net: nn.Module | None = None
        self.n_items = 0
        self.losses: list[float] = []  # mean training loss of each epoch
        self.epoch_seconds: list[float] = []  # wall time of each epoch

    def build_net(self, n_items: int) -> nn.Module:
        raise NotImplementedError

    def fit(self, train_samples: pd.DataFrame, n_items: int) -> Self:
        cfg = self.cfg
        if cfg.loss == "bce" and n_items < 2:
            raise DataError(f"{self.name}: loss 'bce' needs at least 2 items, got {n_items}")
        seqs = history_tensor(train_samples["history"].tolist(), n_items, cfg.max_len)
        targets = torch.tensor(train_samples["target"].to_numpy(dtype=np.int64))
        _check_targets(targets, n_items, self.name)
        self.n_items = n_items
        with torch.random.fork_rng(devices=[]):  # seeded without touching the caller's RNG
            torch.manual_seed(cfg.seed)
            self.net = self.build_net(n_items).to(cfg.device)
            self.losses, self.epoch_seconds = train_epochs(self.net, seqs, targets, n_items, cfg)
        self.net.eval()
        return self

    def scores(self, samples: pd.DataFrame) -> np.ndarray:
        """Item logits ``[n, n_items]`` float32 (softmax them for probabilities)."""
        if self.net is None:
            raise RecbiasError(f"{self.name}: call fit() before scores()")
        net = self.net
        seqs = history_tensor(samples["history"].tolist(), self.n_items, self.cfg.max_len)
        out = []
        with torch.no_grad():
            for chunk in seqs.split(max(self.cfg.batch_size, 1)):
                out.append(net(trim(chunk).to(self.cfg.device)).float().cpu())
        return torch.cat(out).numpy() if out else np.zeros((0, self.n_items), np.float32)

    def recommend(self, samples: pd.DataFrame, k: int) -> Recommendations:
        scores = self.scores(samples)
        if self.cfg.exclude_history:
            for row, hist in enumerate(samples["history"]):
                scores[row, np.asarray(hist, dtype=np.int64)] = -np.inf
        items, values = top_k(scores, k)
        return Recommendations(items, values, samples["sample_id"].to_numpy())
