"""GRU4Rec (Hidasi et al., ICLR 2016) as RecBole implements it: embedding -> GRU -> dot product.

Item embeddings ``[n_items + 1, embedding]`` (row 0 = padding, kept at zero) with dropout feed a
bias-free GRU (``layers`` x ``hidden``); a linear layer maps its state at a history's last item
back to the embedding width, and the dot product with every item embedding is the score.
Histories are right-padded (RecBole's layout); the GRU is causal, so the state at position ``t``
is the state of the prefix ending there, which lets one pass train every prefix
(``shared_prefix``). Training, losses (``ce`` / ``bce``), bf16 autocast and scoring come from
:mod:`recbias.baselines.seqtrain`.

    gru = GRU4RecRecommender(GRU4RecConfig(epochs=10)).fit(train, n_items=1682)
    gru.recommend(test, k=10)     # Recommendations
    gru.scores(test)              # [n, n_items] float32 logits
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

from recbias.baselines.seqtrain import (
    ItemSequenceNet,
    SeqTrainConfig,
    SequenceRecommender,
    fast_dropout,
)
from recbias.config import spec


@dataclass
class GRU4RecConfig(SeqTrainConfig):
    max_len: int = field(default=50, metadata=spec("history window (most recent items)", ge=1))
    dropout: float = field(default=0.3, metadata=spec("dropout on the item embeddings", ge=0, lt=1))
    embedding: int = field(default=64, metadata=spec("item embedding width", ge=1))
    hidden: int = field(default=128, metadata=spec("GRU state width", ge=1))
    layers: int = field(default=1, metadata=spec("stacked GRU layers", ge=1))


class GRU4RecNet(ItemSequenceNet):
    """Scores ``[B, n_items]`` from right-padded histories ``[B, W]`` (item id + 1; 0 = padding)."""

    def __init__(self, n_items: int, cfg: GRU4RecConfig) -> None:
        super().__init__()
        self.items = nn.Embedding(n_items + 1, cfg.embedding, padding_idx=0)
        self.dropout = cfg.dropout
        self.gru = nn.GRU(cfg.embedding, cfg.hidden, cfg.layers, bias=False, batch_first=True)
        self.dense = nn.Linear(cfg.hidden, cfg.embedding)
        nn.init.xavier_normal_(self.items.weight)  # RecBole's initialisation
        for name, weight in self.gru.named_parameters():
            if name.startswith("weight"):
                nn.init.xavier_uniform_(weight)
        with torch.no_grad():
            self.items.weight[0].zero_()

    def states(self, seq: Tensor, at: Tensor) -> Tensor:
        """Projected GRU states at the positions ``at [B, W]`` (bool) -> ``[S, embedding]``."""
        out, _ = self.gru(fast_dropout(self.items(seq), self.dropout, self.training))
        return self.dense(out[at])


class GRU4RecRecommender(SequenceRecommender):
    """GRU4Rec behind the :class:`recbias.evaluation.Recommender` protocol."""

    name = "gru4rec"
    net: GRU4RecNet | None

    def __init__(self, cfg: GRU4RecConfig | None = None) -> None:
        super().__init__(cfg or GRU4RecConfig())

    def build_net(self, n_items: int) -> GRU4RecNet:
        assert isinstance(self.cfg, GRU4RecConfig)
        return GRU4RecNet(n_items, self.cfg)
