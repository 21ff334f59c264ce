"""SASRec (Kang & McAuley, ICDM 2018): a small causal self-attention sequential recommender.

Item embeddings (shared with the output layer, as in the paper) plus learned positions feed
``layers`` pre-norm causal self-attention blocks (``torch.nn.TransformerEncoderLayer``, point-wise
ReLU feed-forward of width ``ffn``, the hidden size by default as in the paper); the state at the
most recent history position scores every item by a dot product. Histories are the last
``max_len`` items, left-padded, so that position is always the last one; positions count back
from it, and padding is masked out of attention, so dropping all-padding columns changes nothing.
Training (see :mod:`recbias.baselines.seqtrain`) uses each sample's (history -> target) pair with
``loss = "ce"`` (full softmax cross-entropy, the "SASRec++" variant now standard) or ``"bce"``
(the paper's sampled binary loss), Adam (β = 0.9, 0.98), seeded.

    sas = SASRecRecommender(SASRecConfig(epochs=20)).fit(train, n_items=len(titles))
    recs = sas.recommend(test, k=10)      # Recommender protocol
    logits = sas.scores(test)             # [n, n_items], e.g. for D3's text-free assistant
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import ClassVar

import torch
from torch import Tensor, nn

from recbias.baselines.seqtrain import (
    SeqTrainConfig,
    SequenceRecommender,
    history_tensor,
    top_k,
)

log = logging.getLogger(__name__)
__all__ = [
    "SASRecConfig",
    "SASRecNet",
    "SASRecRecommender",
    "attention_mask",
    "history_tensor",
    "top_k",
]


@dataclass
class SASRecConfig(SeqTrainConfig):
    KEY: ClassVar[str] = "baselines.sasrec"
    hidden: int = field(default=64, metadata={"help": "embedding and attention width"})
    layers: int = field(default=2, metadata={"help": "self-attention blocks"})
    heads: int = field(default=2, metadata={"help": "attention heads"})
    ffn: int = field(
        default=0, metadata={"help": "feed-forward width; 0 = hidden (the paper; RecBole: 256)"}
    )

    def validate(self) -> None:
        super().validate()
        self._check_positive("hidden", "layers", "heads")
        if self.ffn < 0:
            raise self._fail("ffn", ">= 0 (0 = hidden)")
        if self.hidden % self.heads:
            raise self._fail("heads", f"a divisor of hidden ({self.hidden})")


class SASRecNet(nn.Module):
    """Scores ``[B, n_items]`` from left-padded histories ``[B, W]``, W ≤ max_len (id + 1; 0 = pad)."""

    def __init__(self, n_items: int, cfg: SASRecConfig) -> None:
        super().__init__()
        self.heads, self.scale, self.max_len = cfg.heads, cfg.hidden**0.5, cfg.max_len
        self.items = nn.Embedding(n_items + 1, cfg.hidden, padding_idx=0)
        self.positions = nn.Embedding(cfg.max_len, cfg.hidden)
        self.dropout = nn.Dropout(cfg.dropout)
        block = nn.TransformerEncoderLayer(
            cfg.hidden,
            cfg.heads,
            dim_feedforward=cfg.ffn or cfg.hidden,
            dropout=cfg.dropout,
            batch_first=True,
            norm_first=True,
        )
        self.encoder = nn.TransformerEncoder(
            block, cfg.layers, norm=nn.LayerNorm(cfg.hidden), enable_nested_tensor=False
        )

    def encode(self, seq: Tensor) -> Tensor:
        """State at the most recent position: ``[B, W] -> [B, hidden]``."""
        real = seq > 0
        # Positions are right-aligned (the last column is max_len - 1) so any width gives the same.
        pos = torch.arange(self.max_len - seq.shape[1], self.max_len, device=seq.device)
        x = self.items(seq) * self.scale + self.positions(pos)[None]
        x = self.dropout(x) * real[..., None]
        return self.encoder(x, mask=attention_mask(real, self.heads))[:, -1]

    def item_weights(self) -> Tensor:
        """``[n_items, hidden]``: the input embeddings, shared with the output layer."""
        return self.items.weight[1:]

    def forward(self, seq: Tensor) -> Tensor:
        return self.encode(seq) @ self.item_weights().T


def attention_mask(real: Tensor, heads: int) -> Tensor:
    """``[B * heads, L, L]`` True = blocked: causal, and no real position attends to padding.

    A padding position attends to itself only, so no attention row is empty (no NaN).
    """
    length = real.shape[1]
    causal = torch.ones(length, length, dtype=torch.bool, device=real.device).tril()
    self_only = torch.eye(length, dtype=torch.bool, device=real.device)
    allowed = causal[None] & (real[:, None, :] | self_only[None])
    return (~allowed).repeat_interleave(heads, dim=0)


class SASRecRecommender(SequenceRecommender):
    """SASRec behind the :class:`recbias.evaluation.Recommender` protocol."""

    name = "sasrec"
    net: SASRecNet | None

    def __init__(self, cfg: SASRecConfig | None = None) -> None:
        super().__init__(cfg or SASRecConfig())

    def build_net(self, n_items: int) -> SASRecNet:
        assert isinstance(self.cfg, SASRecConfig)
        return SASRecNet(n_items, self.cfg)
