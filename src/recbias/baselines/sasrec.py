"""SASRec (Kang & McAuley, ICDM 2018): a small causal self-attention sequential recommender.

Item embeddings (shared with the output layer, as in the paper) plus learned positions feed
``layers`` pre-norm causal self-attention blocks (``torch.nn.TransformerEncoderLayer``, point-wise
ReLU feed-forward of the hidden size); the state at the most recent history position scores every
item by a dot product. Histories are the last ``max_len`` items, left-padded, so that position is
always the last one; padding is masked out of attention. Training uses each training sample's
(history -> target) pair with full softmax cross-entropy over all items (the "SASRec++"/softmax
variant now standard, not the paper's sampled binary loss), Adam (β = 0.9, 0.98), seeded.

    sas = SASRecRecommender(SASRecConfig(epochs=20)).fit(train, n_items=len(titles))
    recs = sas.recommend(test, k=10)      # Recommender protocol
    logits = sas.scores(test)             # [n, n_items], e.g. for D3's text-free assistant
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Self

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from recbias.errors import ConfigError, DataError, RecbiasError
from recbias.evaluation.predictions import Recommendations

log = logging.getLogger(__name__)
_KEY = "baselines.sasrec"


@dataclass
class SASRecConfig:
    hidden: int = field(default=64, metadata={"help": "embedding and attention width"})
    layers: int = field(default=2, metadata={"help": "self-attention blocks"})
    heads: int = field(default=2, metadata={"help": "attention heads"})
    max_len: int = field(default=10, metadata={"help": "history window (most recent items)"})
    dropout: float = field(default=0.2, metadata={"help": "dropout rate"})
    epochs: int = field(default=20, metadata={"help": "passes over the training samples"})
    lr: float = field(default=1e-3, metadata={"help": "Adam learning rate"})
    batch_size: int = field(default=256, metadata={"help": "samples per step"})
    seed: int = field(default=0, metadata={"help": "initialisation, shuffling and dropout"})
    exclude_history: bool = field(
        default=False, metadata={"help": "never recommend an item of the sample's history"}
    )
    device: str = field(default="cpu", metadata={"help": "torch device for training and scoring"})

    def validate(self) -> None:
        positive = ("hidden", "layers", "heads", "max_len", "epochs", "batch_size")
        for key in positive:
            if getattr(self, key) < 1:
                raise ConfigError(
                    f"config key '{_KEY}.{key}': must be >= 1, got {getattr(self, key)}"
                )
        if self.hidden % self.heads:
            raise ConfigError(
                f"config key '{_KEY}.heads': must divide hidden ({self.hidden}), got {self.heads}"
            )
        if not 0.0 <= self.dropout < 1.0:
            raise ConfigError(f"config key '{_KEY}.dropout': must be in [0, 1), got {self.dropout}")
        if self.lr <= 0:
            raise ConfigError(f"config key '{_KEY}.lr': must be > 0, got {self.lr}")


class SASRecNet(nn.Module):
    """Scores ``[B, n_items]`` from left-padded histories ``[B, L]`` (item id + 1; 0 = padding)."""

    def __init__(self, n_items: int, cfg: SASRecConfig) -> None:
        super().__init__()
        self.heads, self.scale = cfg.heads, cfg.hidden**0.5
        self.items = nn.Embedding(n_items + 1, cfg.hidden, padding_idx=0)
        self.positions = nn.Embedding(cfg.max_len, cfg.hidden)
        self.dropout = nn.Dropout(cfg.dropout)
        block = nn.TransformerEncoderLayer(
            cfg.hidden,
            cfg.heads,
            dim_feedforward=cfg.hidden,
            dropout=cfg.dropout,
            batch_first=True,
            norm_first=True,
        )
        self.encoder = nn.TransformerEncoder(
            block, cfg.layers, norm=nn.LayerNorm(cfg.hidden), enable_nested_tensor=False
        )

    def forward(self, seq: Tensor) -> Tensor:
        real = seq > 0
        pos = torch.arange(seq.shape[1], device=seq.device)
        x = self.items(seq) * self.scale + self.positions(pos)[None]
        x = self.dropout(x) * real[..., None]
        h = self.encoder(x, mask=attention_mask(real, self.heads))
        return h[:, -1] @ self.items.weight[1:].T


def attention_mask(real: Tensor, heads: int) -> Tensor:
    """``[B * heads, L, L]`` True = blocked: causal, and no real position attends to padding.

    A padding position attends to itself only, so no attention row is empty (no NaN).
    """
    length = real.shape[1]
    causal = torch.ones(length, length, dtype=torch.bool, device=real.device).tril()
    self_only = torch.eye(length, dtype=torch.bool, device=real.device)
    allowed = causal[None] & (real[:, None, :] | self_only[None])
    return (~allowed).repeat_interleave(heads, dim=0)


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


class SASRecRecommender:
    """SASRec behind the :class:`recbias.evaluation.Recommender` protocol."""

    name = "sasrec"

    def __init__(self, cfg: SASRecConfig | None = None) -> None:
        self.cfg = cfg or SASRecConfig()
        self.cfg.validate()
        self.net: SASRecNet | None = None
        self.n_items = 0
        self.losses: list[float] = []  # mean training loss of each epoch

    def fit(self, train_samples: pd.DataFrame, n_items: int) -> Self:
        cfg = self.cfg
        seqs = history_tensor(train_samples["history"].tolist(), n_items, cfg.max_len)
        targets = torch.tensor(train_samples["target"].to_numpy(dtype=np.int64))
        if len(targets) == 0:
            raise DataError("sasrec: no training samples")
        if int(targets.min()) < 0 or int(targets.max()) >= n_items:
            raise DataError(f"samples: column 'target' holds item ids outside [0, {n_items})")
        self.n_items = n_items
        with torch.random.fork_rng(devices=[]):  # seeded without touching the caller's RNG
            torch.manual_seed(cfg.seed)
            self.net = SASRecNet(n_items, cfg).to(cfg.device)
            self.losses = self._train(seqs, targets)
        self.net.eval()
        return self

    def _train(self, seqs: Tensor, targets: Tensor) -> list[float]:
        cfg, net = self.cfg, self.net
        assert net is not None
        opt = torch.optim.Adam(net.parameters(), lr=cfg.lr, betas=(0.9, 0.98))
        gen = torch.Generator().manual_seed(cfg.seed)
        losses = []
        net.train()
        for epoch in range(cfg.epochs):
            total = 0.0
            for idx in torch.randperm(len(targets), generator=gen).split(cfg.batch_size):
                logits = net(seqs[idx].to(cfg.device))
                loss = F.cross_entropy(logits, targets[idx].to(cfg.device))
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                total += float(loss.detach()) * len(idx)
            losses.append(total / len(targets))
            log.debug("sasrec epoch %d: loss %.4f", epoch, losses[-1])
        return losses

    def scores(self, samples: pd.DataFrame) -> np.ndarray:
        """Item logits ``[n, n_items]`` float32 (softmax them for probabilities)."""
        if self.net is None:
            raise RecbiasError("sasrec: call fit() before scores()")
        seqs = history_tensor(samples["history"].tolist(), self.n_items, self.cfg.max_len)
        out = []
        with torch.no_grad():
            for chunk in seqs.split(max(self.cfg.batch_size, 1)):
                out.append(self.net(chunk.to(self.cfg.device)).float().cpu())
        return torch.cat(out).numpy() if out else np.zeros((0, self.n_items), np.float32)

    def recommend(self, samples: pd.DataFrame, k: int) -> Recommendations:
        scores = self.scores(samples)
        if self.cfg.exclude_history:
            for row, hist in enumerate(samples["history"]):
                scores[row, np.asarray(hist, dtype=np.int64)] = -np.inf
        items, values = top_k(scores, k)
        return Recommendations(items, values, samples["sample_id"].to_numpy())
