"""SFT: cross-entropy on the target tokens only (BIGRec/D3/MSL with ``train_on_inputs=False``)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from recbias.objectives.base import ObjectiveBase


@dataclass
class SFTConfig:
    """SFT has no parameters."""


class SFTObjective(ObjectiveBase):
    """L = Σ_t CE(logits_t, y_t) / n_target_tokens over the effective batch."""

    name = "sft"

    def __init__(self, cfg: SFTConfig | None = None) -> None:
        self.cfg = cfg or SFTConfig()

    def normaliser(self, labels: torch.Tensor, meta: dict[str, torch.Tensor]) -> torch.Tensor:
        return torch.tensor(float(labels.numel()))

    def __call__(
        self, logits: torch.Tensor, labels: torch.Tensor, meta: dict[str, torch.Tensor]
    ) -> torch.Tensor:
        return F.cross_entropy(logits.float(), labels, reduction="sum")
