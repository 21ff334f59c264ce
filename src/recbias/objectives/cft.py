"""CFT: counterfactual fine-tuning with positional token weights (peer notes §4.5).

    L = Σ_t w_t·CE(z_t, y_t) / Σ_t w_t  +  α · Σ_t w_t·CE(z_t − z̃_t, y_t) / Σ_t w_t

``z`` = logits with the user's history, ``z̃`` = logits of a second forward pass of the same model
on the prompt *without* the history, ``w_t`` = Pos's linear decay (:mod:`recbias.objectives.pos`).
Defaults α = 0.1, β = 0.25 and gradients through both passes are the original's
(itsmeyjt/CFT ``train.py``, all hard-coded there); ``detach_counterfactual`` stops the gradient
through ``z̃``. α = 0 skips the second pass and is Pos; α = 0, β = 1 is SFT.

The no-history prompt: CFT removes the whole Input section (a no-input Alpaca template); IGD's
reimplementation writes the literal ``"Unknow"`` in place of the history. Here the history is
removed and replaced by a placeholder text: ``no_history_text`` when set (e.g. ``"Unknow"``),
otherwise the prompt's own ``prompt.history_placeholder`` (``"N/A"``), i.e. ``builder.encode([],
None, title)``; ``""`` leaves nothing in its place. The target tokens are the same in both
prompts, so the two passes align token by token. The second pass runs under the trainer's autocast
(``ctx.dtype``).

    [train.objective]
    name = "cft"
    [train.objective.cft]
    alpha = 0.1
    beta = 0.25
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace

import torch
import torch.nn.functional as F

from recbias.config import Config, spec
from recbias.errors import RecbiasError
from recbias.lm.batching import Batch, TokenizedSample, collate
from recbias.lm.loading import autocast
from recbias.objectives.base import ObjectiveBase, ObjectiveContext
from recbias.objectives.pos import positional_weights
from recbias.prompts import PromptBuilder

_CF_KEYS = ("cft_input_ids", "cft_attention_mask", "cft_labels")


@dataclass
class CFTConfig(Config):
    """Defaults are the original CFT code's: α = 0.1, β = 0.25, no detach."""

    alpha: float = field(default=0.1, metadata=spec("weight of the counterfactual term", ge=0))
    beta: float = field(
        default=0.25, metadata=spec("positional decay: weight of the last target token", ge=0, le=1)
    )
    detach_counterfactual: bool = field(
        default=False,
        metadata={"help": "stop gradients through the no-history pass (CFT: false)"},
    )
    no_history_text: str | None = field(
        default=None,
        metadata={
            "help": "text standing for the removed history (IGD's reimplementation: 'Unknow'); "
            "unset = prompt.history_placeholder; '' = nothing"
        },
    )


def no_history_samples(
    builder: PromptBuilder, titles: Sequence[str], samples: Sequence[TokenizedSample]
) -> dict[int, TokenizedSample]:
    """The counterfactual sample of every training sample, by sample id."""
    out = {}
    for s in samples:
        enc = builder.encode([], None, titles[s.target_item])
        if enc.target_ids != s.prompt.target_ids:
            raise RecbiasError(f"sample {s.sample_id}: its target tokens differ from the builder's")
        out[s.sample_id] = TokenizedSample(s.sample_id, s.target_item, enc)
    return out


class CFTObjective(ObjectiveBase):
    name = "cft"

    def __init__(self, cfg: CFTConfig | None = None) -> None:
        self.cfg = cfg or CFTConfig()
        self.cfg.validate()
        self._cf: dict[int, TokenizedSample] = {}
        self._model: torch.nn.Module | None = None

    def setup(self, ctx: ObjectiveContext) -> None:
        self._model, self._dtype, self._pad = ctx.model, ctx.dtype, ctx.pad_id
        builder = ctx.builder
        if self.cfg.no_history_text is not None:
            prompt_cfg = replace(builder.cfg, history_placeholder=self.cfg.no_history_text)
            builder = PromptBuilder(builder.tokenizer, prompt_cfg, builder.domain)
        self._cf = no_history_samples(builder, ctx.titles, ctx.samples)

    def prepare(self, batch: Batch) -> None:
        """Collate the no-history twins of the batch's rows (same row order) into ``meta``."""
        if self._model is None:
            raise RuntimeError("CFTObjective.setup must run before training")
        if self.cfg.alpha == 0:
            return
        missing = [i for i in batch.sample_ids.tolist() if i not in self._cf]
        if missing:
            raise RecbiasError(f"sample {missing[0]} was not among the training samples at setup")
        cf = collate([self._cf[i] for i in batch.sample_ids.tolist()], self._pad)
        device = batch.input_ids.device
        # Whole-row tensors ride in meta so that __call__ sees the micro-batch they belong to.
        for key, value in zip(_CF_KEYS, (cf.input_ids, cf.attention_mask, cf.labels), strict=True):
            batch.meta[key] = value.to(device)

    def _weights(self, meta: dict[str, torch.Tensor]) -> torch.Tensor:
        return positional_weights(meta["position"], meta["target_length"], self.cfg.beta)

    def normaliser(self, labels: torch.Tensor, meta: dict[str, torch.Tensor]) -> torch.Tensor:
        return self._weights(meta).sum()

    def _no_history_logits(
        self, meta: dict[str, torch.Tensor], labels: torch.Tensor
    ) -> torch.Tensor:
        from recbias.lm.forward import target_logits

        assert self._model is not None
        ids, mask, cf_labels = (meta[k] for k in _CF_KEYS)
        cf = Batch(ids, mask, cf_labels, torch.empty(0), torch.empty(0), right_padded=True)
        if not torch.equal(cf.target_labels, labels):
            raise RecbiasError("CFT: the no-history batch's targets differ from the batch's")
        with autocast(self._dtype, ids.device):
            logits = target_logits(self._model, cf).float()
        return logits.detach() if self.cfg.detach_counterfactual else logits

    def idle_loss(self, logits: torch.Tensor, batch: Batch) -> torch.Tensor:
        """Zero, through both passes (the no-history one is a forward of the model too)."""
        zero = logits.float().sum() * 0.0
        if self.cfg.alpha > 0:
            zero = zero + self._no_history_logits(batch.meta, batch.target_labels).sum() * 0.0
        return zero

    def __call__(
        self, logits: torch.Tensor, labels: torch.Tensor, meta: dict[str, torch.Tensor]
    ) -> torch.Tensor:
        logits = logits.float()
        weights = self._weights(meta)
        loss = weights * F.cross_entropy(logits, labels, reduction="none")
        if self.cfg.alpha > 0:
            cf_logits = logits - self._no_history_logits(meta, labels)
            loss = loss + self.cfg.alpha * weights * F.cross_entropy(
                cf_logits, labels, reduction="none"
            )
        return loss.sum()
