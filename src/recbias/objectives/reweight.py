"""Reweight: inverse-popularity sample weights (the "Reweight" baseline of GDRT's Table 2).

    w_s = count(target_s)^(−γ),     L = Σ_s w_s Σ_{t ∈ s} CE_t / Σ_s w_s · n_s

over the effective batch; every token of a sample carries the sample's weight, so the loss is the
weighted mean token cross-entropy. ``count`` is the item's training-target popularity
(``ctx.item_counts``); γ = 1 is standard inverse-propensity reweighting and γ = 0 is plain SFT.
GDRT cites Reweight to Jiang et al. 2024 ("Item-side fairness of LLM-based recommendation
systems", WWW'24), which "balances recommendations using pre-calculated item weights"; its exact
weight formula is not reproduced here (no code was available), so the exponent is configurable.

    [train.objective]
    name = "reweight"
    [train.objective.reweight]
    gamma = 1.0
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F

from recbias.config import Config, spec
from recbias.errors import RecbiasError
from recbias.lm.batching import Batch
from recbias.objectives.base import ObjectiveBase, ObjectiveContext


@dataclass
class ReweightConfig(Config):
    """Default γ = 1: weights inversely proportional to the target item's popularity."""

    gamma: float = field(
        default=1.0,
        metadata=spec("sample weight = (training count of its target item)^-gamma; 0 = SFT", ge=0),
    )


def item_weights(item_counts: np.ndarray, gamma: float) -> torch.Tensor:
    """``[n_items]`` count^-γ; items never seen as a target get 0 (they cannot be one)."""
    counts = torch.as_tensor(np.asarray(item_counts), dtype=torch.float64)
    weights = counts.clamp_min(1.0).pow(-gamma)
    return torch.where(counts > 0, weights, 0.0).float()


class ReweightObjective(ObjectiveBase):
    name = "reweight"

    def __init__(self, cfg: ReweightConfig | None = None) -> None:
        self.cfg = cfg or ReweightConfig()
        self.cfg.validate()
        self._item_weight: torch.Tensor | None = None

    def setup(self, ctx: ObjectiveContext) -> None:
        weights = item_weights(ctx.item_counts, self.cfg.gamma)
        targets = torch.tensor([s.target_item for s in ctx.samples], dtype=torch.long)
        unseen = (weights[targets] == 0).nonzero().squeeze(1)
        if unseen.numel():
            s = ctx.samples[int(unseen[0])]
            raise RecbiasError(
                f"sample {s.sample_id}: target item {s.target_item} ({ctx.titles[s.target_item]!r}) "
                "has training count 0; item_counts must count the training targets"
            )
        self._item_weight = weights

    def prepare(self, batch: Batch) -> None:
        if self._item_weight is None:
            raise RuntimeError("ReweightObjective.setup must run before training")
        sample = batch.meta["sample"]
        per_sample = self._item_weight[batch.target_items.cpu()].to(sample.device)
        batch.meta["reweight_weight"] = per_sample[sample]

    def normaliser(self, labels: torch.Tensor, meta: dict[str, torch.Tensor]) -> torch.Tensor:
        return meta["reweight_weight"].sum()

    def __call__(
        self, logits: torch.Tensor, labels: torch.Tensor, meta: dict[str, torch.Tensor]
    ) -> torch.Tensor:
        ce = F.cross_entropy(logits.float(), labels, reduction="none")
        return (meta["reweight_weight"] * ce).sum()
