"""Shared pieces of the item-ID sequential recommenders (SASRec, GRU4Rec): config, loss, loop.

A sequence net is causal: it reads right-padded histories ``seq [B, W]`` (item id + 1, 0 =
padding after the last item) and its state at position ``t`` depends only on items ``<= t``.
``states(seq, at)`` returns the states at the positions marked in ``at [B, W]`` as ``[S, D]``
(row-major order); ``item_weights()`` gives the item vectors ``[n_items, D]``; a score is their
dot product. Training is RecBole's: one (history -> target) pair per sample, with

* ``loss = "ce"``: softmax cross-entropy over the full catalog.
* ``loss = "bce"``: the SASRec paper's sampled binary cross-entropy, ``-log σ(s_pos) -
  Σ log(1 - σ(s_neg))`` over ``negatives`` items drawn uniformly from the catalog **minus the
  target** (never the positive; history items may be drawn).

Speed options (see :mod:`recbias.baselines.sequnits` for the grouping):

* ``shared_prefix``: samples whose window + target is a prefix of another sample's are trained
  in that sample's pass (a causal net gives every prefix's state in one pass). Per epoch each
  sample is still supervised once, batches still hold ~``batch_size`` samples and the loss is
  still the mean over samples, so without dropout the gradient equals the per-sample one; with
  dropout the samples of one pass share their dropout masks (same distribution per sample).
* ``dtype = "bf16"`` (or ``auto`` where bf16 is fast, see :mod:`recbias.hardware`): the net runs under CPU/CUDA autocast in bfloat16; states are cast back
  to float32 before the item dot products, so logits, losses and rankings are float32.
* ``bucket``: units of similar length share a batch, which drops trailing padding columns.

Both ``shared_prefix`` and ``bucket`` are off by default: on ML-100K (GRU4Rec, 5 epochs, RecBole's
settings) they made an epoch faster but left valid NDCG@10 at 0.027 (both on) against 0.033
(both off) and RecBole's 0.034, because they make a batch's samples correlated (one user's
prefixes, or one history length).

    recommender = SASRecRecommender(SASRecConfig(loss="bce")).fit(train, n_items=1682)
    recommender.scores(test)        # [n, n_items] float32 logits
    recommender.recommend(test, 10) # Recommendations, ties to the smaller item id
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol, Self

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from recbias.baselines.sequnits import TrainUnits, build_units, history_tensor, trim
from recbias.config import Config, spec, to_dict
from recbias.errors import DataError, RecbiasError
from recbias.hardware import bf16_enabled
from recbias.recs import Recommendations

log = logging.getLogger(__name__)
LOSSES = ("ce", "bce")
DTYPES = ("auto", "fp32", "bf16")
__all__ = ["SeqTrainConfig", "SequenceRecommender", "history_tensor", "top_k", "trim"]


@dataclass
class SeqTrainConfig(Config):
    """Training fields shared by the sequential baselines (subclasses add the architecture)."""

    max_len: int = field(default=10, metadata=spec("history window (most recent items)", ge=1))
    dropout: float = field(default=0.2, metadata=spec("dropout rate", ge=0, lt=1))
    epochs: int = field(default=20, metadata=spec("passes over the training samples", ge=1))
    lr: float = field(default=1e-3, metadata=spec("Adam learning rate", gt=0))
    batch_size: int = field(default=256, metadata=spec("samples per step", ge=1))
    loss: str = field(
        default="ce",
        metadata=spec(
            "ce (full softmax) or bce (sampled negatives, the SASRec paper's)", choices=LOSSES
        ),
    )
    negatives: int = field(default=1, metadata=spec("bce: negatives drawn per sample", ge=1))
    bucket: bool = field(
        default=False,
        metadata={
            "help": "batch units of similar length and drop all-padding columns (faster; "
            "length-homogeneous batches slowed convergence per epoch on ML-100K)"
        },
    )
    beta2: float = field(
        default=0.999,
        metadata=spec("Adam β2 (RecBole and torch: 0.999; the SASRec paper: 0.98)", gt=0, lt=1),
    )
    shared_prefix: bool = field(
        default=False,
        metadata={
            "help": "train samples that are prefixes of another sample in its pass (exact loss, "
            "fewer passes; but a batch then holds many samples of one user, which slowed "
            "convergence per epoch on ML-100K)"
        },
    )
    dtype: str = field(
        default="auto",
        metadata=spec(
            "fp32, bf16 (autocast for the net; logits and loss stay fp32), or auto = bf16 "
            "where the device runs it fast, else fp32",
            choices=DTYPES,
        ),
    )
    seed: int = field(default=0, metadata={"help": "initialisation, shuffling and dropout"})
    exclude_history: bool = field(
        default=False, metadata={"help": "never recommend an item of the sample's history"}
    )
    device: str = field(default="cpu", metadata={"help": "torch device for training and scoring"})


class SequenceNet(Protocol):
    def states(self, seq: Tensor, at: Tensor) -> Tensor: ...  # [B, W], [B, W] bool -> [S, D]
    def item_weights(self) -> Tensor: ...  # [n_items, D]


def fast_dropout(x: Tensor, p: float, training: bool) -> Tensor:
    """Inverted dropout with a ``rand >= p`` mask: the law of ``F.dropout``, ~3x cheaper on CPU.

    (``bernoulli_``, behind ``F.dropout``, was half of SASRec's CPU training time.)
    """
    if not training or p == 0.0:
        return x
    keep = torch.rand(x.shape, device=x.device) >= p
    return x * (keep.to(x.dtype) * (1.0 / (1.0 - p)))


def last_positions(seq: Tensor) -> Tensor:
    """``[B, W]`` bool, True at each row's last item (column 0 for an empty history)."""
    last = ((seq > 0).sum(dim=1) - 1).clamp(min=0)
    return torch.arange(seq.shape[1], device=seq.device)[None] == last[:, None]


class ItemSequenceNet(nn.Module):
    """The scoring head both nets share: the state at a history's last item, dot the item
    embeddings (``self.items``, row 0 = padding, shared with the input). Subclasses set
    ``items`` and define ``states``."""

    items: nn.Embedding

    def states(self, seq: Tensor, at: Tensor) -> Tensor:
        """States at the positions ``at [B, W]`` (bool) -> ``[S, D]``."""
        raise NotImplementedError

    def encode(self, seq: Tensor) -> Tensor:
        """``[B, W] -> [B, D]``: the state at each row's last item."""
        return self.states(seq, last_positions(seq))

    def item_weights(self) -> Tensor:
        """``[n_items, D]``: the input embeddings without the padding row."""
        return self.items.weight[1:]

    def forward(self, seq: Tensor) -> Tensor:
        return self.encode(seq) @ self.item_weights().T


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


def bce_terms(state: Tensor, items: Tensor, targets: Tensor, negatives: Tensor) -> Tensor:
    """Per row ``softplus(-s_pos) + Σ_neg softplus(s_neg)`` -> ``[B]``.

    state: [B, D], items: [n_items, D], targets: [B], negatives: [B, m].
    """
    pos = (state * items[targets]).sum(-1)
    neg = torch.einsum("bd,bmd->bm", state, items[negatives])
    return F.softplus(-pos) + F.softplus(neg).sum(-1)


def bce_loss(state: Tensor, items: Tensor, targets: Tensor, negatives: Tensor) -> Tensor:
    """Mean over the batch of :func:`bce_terms`."""
    return bce_terms(state, items, targets, negatives).mean()


def autocast(cfg: SeqTrainConfig) -> contextlib.AbstractContextManager:
    """bf16 autocast on ``cfg.device`` when ``cfg.dtype`` resolves to bf16 there, else nothing."""
    if not bf16_enabled(cfg.dtype, cfg.device):
        return contextlib.nullcontext()
    return torch.autocast(torch.device(cfg.device).type, dtype=torch.bfloat16)


def units_loss(
    net: SequenceNet,
    batch: TrainUnits,
    cfg: SeqTrainConfig,
    negatives: Tensor | None = None,
) -> Tensor:
    """Sample-weighted mean loss of a batch of units (``negatives [S, m]`` for ``bce``)."""
    at = batch.weights > 0
    with autocast(cfg):
        state = net.states(batch.seqs, at)
    state, items = state.float(), net.item_weights().float()
    targets, weights = batch.targets[at], batch.weights[at]
    if negatives is None:
        per_sample = F.cross_entropy(state @ items.T, targets, reduction="none")
    else:
        per_sample = bce_terms(state, items, targets, negatives)
    return (per_sample * weights).sum() / weights.sum()


def epoch_batches(units: TrainUnits, cfg: SeqTrainConfig, gen: torch.Generator) -> list[Tensor]:
    """Unit indices per batch for one epoch: ~``batch_size`` samples each, in random order.

    A unit joins the batch in which its first sample falls, so a batch may exceed
    ``batch_size`` by less than one unit. With ``bucket``, units are sorted by width first.
    """
    perm = torch.randperm(len(units), generator=gen)
    if cfg.bucket:
        perm = perm[torch.sort(units.widths[perm], stable=True).indices]
    counts = units.counts[perm]
    batch_id = (torch.cumsum(counts, 0) - counts) // cfg.batch_size
    sizes = torch.bincount(batch_id).tolist()
    batches = [b for b in perm.split(sizes) if len(b)]
    if not cfg.bucket:
        return batches
    return [batches[i] for i in torch.randperm(len(batches), generator=gen).tolist()]


def make_optimizer(net: nn.Module, cfg: SeqTrainConfig) -> torch.optim.Optimizer:
    """Adam (β = 0.9, ``beta2``); the fused kernel when this torch build has it for the device."""
    betas = (0.9, cfg.beta2)
    try:
        return torch.optim.Adam(net.parameters(), lr=cfg.lr, betas=betas, fused=True)
    except (RuntimeError, TypeError):
        return torch.optim.Adam(net.parameters(), lr=cfg.lr, betas=betas)


def train_epochs(
    net: nn.Module,
    units: TrainUnits,
    n_items: int,
    cfg: SeqTrainConfig,
    on_epoch: Callable[[int], None] | None = None,
    losses: list[float] | None = None,
    seconds: list[float] | None = None,
) -> tuple[list[float], list[float]]:
    """Train on ``units`` for ``cfg.epochs`` -> (mean loss per sample, seconds) per epoch.

    ``on_epoch(epoch)`` runs after each epoch with the net in eval mode, outside the timed
    span (e.g. a validation curve), under a forked global RNG so it cannot change training.
    ``losses``/``seconds``, when given, are filled in place, so ``on_epoch`` can read them.
    """
    opt = make_optimizer(net, cfg)
    gen = torch.Generator().manual_seed(cfg.seed)
    losses = [] if losses is None else losses
    seconds = [] if seconds is None else seconds
    net.train()
    for epoch in range(cfg.epochs):
        start, total = time.perf_counter(), torch.zeros(())
        for idx in epoch_batches(units, cfg, gen):
            batch = units.select(idx, trim_to_width=cfg.bucket).to(cfg.device)
            negatives = None
            if cfg.loss == "bce":
                targets = batch.targets[batch.weights > 0]
                negatives = sample_negatives(targets.cpu(), n_items, cfg.negatives, gen)
                negatives = negatives.to(cfg.device)
            loss = units_loss(net, batch, cfg, negatives)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            total += loss.detach().cpu() * batch.weights.sum().cpu()
        losses.append(float(total) / float(units.counts.sum()))
        seconds.append(time.perf_counter() - start)
        log.debug("epoch %d: loss %.4f, %.1f s", epoch, losses[-1], seconds[-1])
        if on_epoch is not None:
            net.eval()
            with torch.random.fork_rng(devices=[]):
                on_epoch(epoch)
            net.train()
    return losses, seconds


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

    def fit(
        self,
        train_samples: pd.DataFrame,
        n_items: int,
        on_epoch: Callable[[int, Self], None] | None = None,
    ) -> Self:
        """Train on ``(history, target)`` samples; ``on_epoch(epoch, self)`` after each epoch
        (net in eval mode, not timed; ``self.losses``/``self.epoch_seconds`` already hold that
        epoch): e.g. ``self.scores(valid)`` for a validation curve."""
        cfg = self.cfg
        if cfg.loss == "bce" and n_items < 2:
            raise DataError(f"{self.name}: loss 'bce' needs at least 2 items, got {n_items}")
        if len(train_samples) == 0:
            raise DataError(f"{self.name}: no training samples")
        units = build_units(
            train_samples["history"].tolist(),
            train_samples["target"].to_numpy(dtype=np.int64),
            n_items,
            cfg.max_len,
            shared=cfg.shared_prefix,
        )
        self.n_items = n_items
        with torch.random.fork_rng(devices=[]):  # seeded without touching the caller's RNG
            torch.manual_seed(cfg.seed)
            self.net = self.build_net(n_items).to(cfg.device)
            hook = None if on_epoch is None else (lambda epoch: on_epoch(epoch, self))
            self.losses, self.epoch_seconds = [], []
            train_epochs(self.net, units, n_items, cfg, hook, self.losses, self.epoch_seconds)
        self.net.eval()
        return self

    def state(self) -> dict[str, Any]:
        """What :meth:`restore` needs: the config (as a dict), the item count and the weights."""
        if self.net is None:
            raise RecbiasError(f"{self.name}: call fit() before state()")
        return {"config": to_dict(self.cfg), "n_items": self.n_items, "net": self.net.state_dict()}

    def restore(self, state: dict[str, Any]) -> Self:
        """The fitted model of a :meth:`state` made with this config, without training."""
        if state.get("config") != to_dict(self.cfg):
            raise RecbiasError(f"{self.name}: the saved model was fitted with another config")
        self.n_items = int(state["n_items"])
        with torch.random.fork_rng(devices=[]):  # building the net draws its (discarded) init
            self.net = self.build_net(self.n_items).to(self.cfg.device)
        self.net.load_state_dict(state["net"])
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
            items = net.item_weights().float()
            for chunk in seqs.split(max(self.cfg.batch_size, 1)):
                chunk = trim(chunk).to(self.cfg.device)
                with autocast(self.cfg):
                    state = net.states(chunk, last_positions(chunk))
                out.append((state.float() @ items.T).cpu())
        return torch.cat(out).numpy() if out else np.zeros((0, self.n_items), np.float32)

    def recommend(self, samples: pd.DataFrame, k: int) -> Recommendations:
        scores = self.scores(samples)
        if self.cfg.exclude_history:
            for row, hist in enumerate(samples["history"]):
                scores[row, np.asarray(hist, dtype=np.int64)] = -np.inf
        items, values = top_k(scores, k)
        return Recommendations(items, values, samples["sample_id"].to_numpy())
