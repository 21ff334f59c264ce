"""SASRec (Kang & McAuley, ICDM 2018): a small causal self-attention sequential recommender.

Item embeddings (shared with the output layer, as in the paper) plus learned positions feed
``layers`` causal self-attention blocks (``heads`` heads, a point-wise feed-forward of width
``ffn``, the hidden size by default as in the paper; dropout on the embeddings, the attention
weights, and after the attention and the feed-forward); the state at a history's last item
scores every item by a dot product. Two block layouts:

* ``norm = "pre"`` (default; the paper's code): embeddings scaled by sqrt(hidden), pre-norm
  blocks with dropout also inside the feed-forward, a final LayerNorm; ReLU.
* ``norm = "post"`` with ``activation = "gelu"``: RecBole's SASRec op for op (LayerNorm on the
  embeddings, post-norm blocks, LayerNorm eps 1e-12), to compare implementations on equal terms.

Histories are right-padded and positions count from the oldest item of the window, RecBole's
convention: with the causal mask a real position never sees padding, and the state at
position ``t`` is the state of the prefix ending there, so one pass trains every prefix
(``shared_prefix``). Training (see :mod:`recbias.baselines.seqtrain`) uses each sample's
(history -> target) pair with ``loss = "ce"`` (full softmax cross-entropy, the "SASRec++"
variant now standard) or ``"bce"`` (the paper's sampled binary loss), Adam (β2 = ``beta2``),
seeded.

    sas = SASRecRecommender(SASRecConfig(epochs=20)).fit(train, n_items=len(titles))
    recs = sas.recommend(test, k=10)      # Recommender protocol
    logits = sas.scores(test)             # [n, n_items], e.g. for D3's text-free assistant
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from recbias.baselines.seqtrain import (
    ItemSequenceNet,
    SeqTrainConfig,
    SequenceRecommender,
    fast_dropout,
    history_tensor,
    top_k,
)
from recbias.config import invalid, spec

log = logging.getLogger(__name__)
__all__ = [
    "CausalBlock",
    "SASRecConfig",
    "SASRecNet",
    "SASRecRecommender",
    "history_tensor",
    "top_k",
]

NORMS = ("pre", "post")
ACTIVATIONS = {"relu": F.relu, "gelu": F.gelu}


@dataclass
class SASRecConfig(SeqTrainConfig):
    hidden: int = field(default=64, metadata=spec("embedding and attention width", ge=1))
    layers: int = field(default=2, metadata=spec("self-attention blocks", ge=1))
    heads: int = field(default=2, metadata=spec("attention heads; a divisor of hidden", ge=1))
    ffn: int = field(
        default=0, metadata=spec("feed-forward width; 0 = hidden (the paper; RecBole: 256)", ge=0)
    )
    norm: str = field(
        default="pre",
        metadata={
            "help": "pre (the paper's code: sqrt(hidden)-scaled embeddings, pre-norm blocks, a "
            "final LayerNorm) or post (RecBole's: LayerNorm on the embeddings, post-norm blocks)",
            "choices": NORMS,
        },
    )
    activation: str = field(
        default="relu",
        metadata=spec(
            "feed-forward activation: relu (the paper) or gelu", choices=tuple(sorted(ACTIVATIONS))
        ),
    )

    def check(self) -> None:
        if self.hidden % self.heads:
            raise invalid("heads", f"must be a divisor of hidden ({self.hidden})", self.heads)


class CausalBlock(nn.Module):
    """Causal self-attention + feed-forward, each with a residual and a LayerNorm: ``[B, W, H]``.

    ``post_norm=False``: ``x + f(norm(x))`` with dropout also inside the feed-forward (the
    paper's code); ``True``: ``norm(x + f(x))``, LayerNorm eps 1e-12, no dropout inside the
    feed-forward (RecBole's).
    """

    def __init__(
        self,
        hidden: int,
        heads: int,
        ffn: int,
        dropout: float,
        post_norm: bool = False,
        activation: str = "relu",
    ) -> None:
        super().__init__()
        self.heads, self.p, self.post_norm = heads, dropout, post_norm
        self.inner_p = 0.0 if post_norm else dropout
        self.act = ACTIVATIONS[activation]
        eps = 1e-12 if post_norm else 1e-5
        self.norm_attn, self.norm_ffn = nn.LayerNorm(hidden, eps), nn.LayerNorm(hidden, eps)
        self.qkv = nn.Linear(hidden, 3 * hidden)
        self.out = nn.Linear(hidden, hidden)
        self.ffn_in, self.ffn_out = nn.Linear(hidden, ffn), nn.Linear(ffn, hidden)

    def attend(self, x: Tensor) -> Tensor:
        batch, width, hidden = x.shape
        q, k, v = self.qkv(x).view(batch, width, 3, self.heads, -1).permute(2, 0, 3, 1, 4)
        if not self.training or self.p == 0.0:  # [B, heads, W, head_dim]
            y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        else:  # explicit, for the cheap dropout on the attention weights
            logits = (q @ k.transpose(-1, -2)) * q.shape[-1] ** -0.5  # [B, heads, W, W]
            future = torch.ones(width, width, dtype=torch.bool, device=x.device).triu(1)
            weights = logits.masked_fill(future, float("-inf")).softmax(dim=-1)
            y = fast_dropout(weights, self.p, True) @ v
        return self.out(y.transpose(1, 2).reshape(batch, width, hidden))

    def feed_forward(self, x: Tensor) -> Tensor:
        inner = fast_dropout(self.act(self.ffn_in(x)), self.inner_p, self.training)
        return fast_dropout(self.ffn_out(inner), self.p, self.training)

    def forward(self, x: Tensor) -> Tensor:
        if self.post_norm:
            x = self.norm_attn(x + fast_dropout(self.attend(x), self.p, self.training))
            return self.norm_ffn(x + self.feed_forward(x))
        x = x + fast_dropout(self.attend(self.norm_attn(x)), self.p, self.training)
        return x + self.feed_forward(self.norm_ffn(x))


class SASRecNet(ItemSequenceNet):
    """Scores ``[B, n_items]`` from right-padded histories ``[B, W]``, W ≤ max_len (id + 1; 0 = pad)."""

    def __init__(self, n_items: int, cfg: SASRecConfig) -> None:
        super().__init__()
        post = cfg.norm == "post"
        self.scale, self.dropout = (1.0 if post else cfg.hidden**0.5), cfg.dropout
        self.items = nn.Embedding(n_items + 1, cfg.hidden, padding_idx=0)
        self.positions = nn.Embedding(cfg.max_len, cfg.hidden)
        ffn = cfg.ffn or cfg.hidden
        self.blocks = nn.ModuleList(
            CausalBlock(cfg.hidden, cfg.heads, ffn, cfg.dropout, post, cfg.activation)
            for _ in range(cfg.layers)
        )
        # pre: a final LayerNorm on the output; post: one on the input embeddings
        self.norm_in: nn.Module = nn.LayerNorm(cfg.hidden, 1e-12) if post else nn.Identity()
        self.norm: nn.Module = nn.Identity() if post else nn.LayerNorm(cfg.hidden)
        self.apply(init_weights)

    def states(self, seq: Tensor, at: Tensor) -> Tensor:
        """States at the positions ``at [B, W]`` (bool) -> ``[S, hidden]``."""
        pos = torch.arange(seq.shape[1], device=seq.device)  # from the window's oldest item
        x = self.norm_in(self.items(seq) * self.scale + self.positions(pos)[None])
        x = fast_dropout(x, self.dropout, self.training)
        for block in self.blocks:
            x = block(x)
        return self.norm(x[at])


def init_weights(module: nn.Module) -> None:
    """RecBole's initialisation: N(0, 0.02) weights, zero biases (LayerNorm: ones and zeros).

    With PyTorch's N(0, 1) embeddings and the sqrt(hidden) input scale, the first epochs'
    logits are in the tens and the softmax loss starts near 40 instead of log(n_items).
    """
    if isinstance(module, nn.Linear | nn.Embedding):
        nn.init.normal_(module.weight, std=0.02)
    if isinstance(module, nn.Linear) and module.bias is not None:
        nn.init.zeros_(module.bias)


class SASRecRecommender(SequenceRecommender):
    """SASRec behind the :class:`recbias.evaluation.Recommender` protocol."""

    name = "sasrec"
    net: SASRecNet | None

    def __init__(self, cfg: SASRecConfig | None = None) -> None:
        super().__init__(cfg or SASRecConfig())

    def build_net(self, n_items: int) -> SASRecNet:
        assert isinstance(self.cfg, SASRecConfig)
        return SASRecNet(n_items, self.cfg)
