"""IGD fine-tuning: down-weight zero-information-gain target tokens (IGD §4.3.1, Eq. 7-8).

    L_D = Σ_t w_t · CE_t / Σ_t w_t,     w_t = β if IG(y_t) = 0 else 1

over the effective batch (IGD's ``IGMonitorTrainer`` normalises by the weight sum of the batch, not
by the token count). IG is measured on a reference trie with ``p_r`` = training-target popularity
(see :mod:`recbias.objectives.information_gain`); β = 1 is plain SFT.

    [train.objective]
    name = "igd"
    [train.objective.igd]
    beta = 0.1
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Literal

import torch
import torch.nn.functional as F

from recbias.config import Config, spec
from recbias.lm.batching import Batch
from recbias.objectives import information_gain as ig
from recbias.objectives.base import ObjectiveBase, ObjectiveContext

log = logging.getLogger(__name__)


@dataclass
class IGDConfig(Config):
    """Defaults are IGD's README: β = 0.1, reference trie over the training-target items."""

    beta: float = field(
        default=0.1,
        metadata=spec("weight of zero-IG target tokens (IGD Eq. 8; 1 = SFT)", ge=0, le=1),
    )
    reference: Literal["train_targets", "catalog"] = field(
        default="train_targets",
        metadata={
            "help": "items of the IG reference trie: the training targets (IGD) or the decoding "
            "candidates (the trie decoding uses)"
        },
    )


class IGDObjective(ObjectiveBase):
    """Zero-IG token weighting; ``zero_ig_share`` is the zero-IG share of the training targets."""

    name = "igd"

    def __init__(self, cfg: IGDConfig | None = None) -> None:
        self.cfg = cfg or IGDConfig()
        self.cfg.validate()
        self.zero_ig_share: float | None = None
        self._weights: ig.SampleTable | None = None

    def setup(self, ctx: ObjectiveContext) -> None:
        if self.cfg.reference == "train_targets":
            trie = ig.target_trie(ctx.builder, ctx.titles, ctx.item_counts)
        else:
            trie = ctx.trie
        info = ig.trie_information(trie, ctx.item_counts)
        nodes, lengths = ig.walk_samples(trie, ctx.samples, ctx.titles, "IG reference trie")
        zero = ig.zero_gain_tokens(info, nodes)
        weights = torch.where(zero, self.cfg.beta, 1.0).float()
        ids = torch.tensor([s.sample_id for s in ctx.samples], dtype=torch.long)
        self._weights = ig.SampleTable(ids, weights)
        self.zero_ig_share = ig.zero_ig_share(zero, lengths)
        log.info("IGD: %.1f%% of the training-target tokens are zero-IG", 100 * self.zero_ig_share)

    def prepare(self, batch: Batch) -> None:
        if self._weights is None:
            raise RuntimeError("IGDObjective.setup must run before training")
        batch.meta["igd_weight"] = self._weights.lookup(batch)

    def normaliser(self, labels: torch.Tensor, meta: dict[str, torch.Tensor]) -> torch.Tensor:
        return meta["igd_weight"].sum()

    def __call__(
        self, logits: torch.Tensor, labels: torch.Tensor, meta: dict[str, torch.Tensor]
    ) -> torch.Tensor:
        ce = F.cross_entropy(logits.float(), labels, reduction="none")
        return (meta["igd_weight"] * ce).sum()
