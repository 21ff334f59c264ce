"""Pos: linear positional decay of the target-token weights (CFT's token weighting, alone).

    w_t = 1 − (t − 1)(1 − β)/(n − 1)    (t = 1..n over the target tokens; n = 1 gives w = 1)
    L   = Σ_t w_t · CE_t / Σ_t w_t       over the effective batch

Source: CFT (Zhang et al. 2024, itsmeyjt/CFT ``train.py``), where β = 0.25 is hard-coded; IGD's
reimplementation calls CFT with α = 0 "Pos" (peer notes §4.5) and grids β over
{0.09, …, 0.96}. The default here is CFT's 0.25; β = 1 is plain SFT. ``n`` counts every supervised
target token (title, terminator and EOS), as CFT's labels do.

    [train.objective]
    name = "pos"
    [train.objective.pos]
    beta = 0.25
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from recbias.config import Config, spec
from recbias.objectives.base import ObjectiveBase


def positional_weights(position: torch.Tensor, length: torch.Tensor, beta: float) -> torch.Tensor:
    """``[n_tok]`` weights from 0-based ``position`` and ``length`` (both ``[n_tok]``)."""
    span = (length - 1).clamp_min(1).float()
    return 1.0 - position.float() * (1.0 - beta) / span


@dataclass
class PosConfig(Config):
    """Default β = 0.25, CFT's hard-coded value (IGD's "Pos" baseline is CFT with α = 0)."""

    beta: float = field(
        default=0.25,
        metadata=spec("weight of the last target token (1 = SFT)", ge=0, le=1),
    )


class PosObjective(ObjectiveBase):
    name = "pos"

    def __init__(self, cfg: PosConfig | None = None) -> None:
        self.cfg = cfg or PosConfig()
        self.cfg.validate()

    def _weights(self, meta: dict[str, torch.Tensor]) -> torch.Tensor:
        return positional_weights(meta["position"], meta["target_length"], self.cfg.beta)

    def normaliser(self, labels: torch.Tensor, meta: dict[str, torch.Tensor]) -> torch.Tensor:
        return self._weights(meta).sum()

    def __call__(
        self, logits: torch.Tensor, labels: torch.Tensor, meta: dict[str, torch.Tensor]
    ) -> torch.Tensor:
        ce = F.cross_entropy(logits.float(), labels, reduction="none")
        return (self._weights(meta) * ce).sum()
