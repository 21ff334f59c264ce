"""DPO and S-DPO on (prompt, chosen item, rejected items), as a training-loop objective.

Every preference example is one prompt with its chosen title (the user's real next item) and
``K >= 1`` rejected titles. Each title is a separate row of the micro-batch, tokenised exactly as
in SFT (:class:`recbias.prompts.PromptBuilder`, :func:`recbias.lm.batching.encode_samples`): the
same prompt, and the title with its terminator and EOS as the supervised target. The sequence
log-probability of a row is the sum of its target tokens' log-probabilities (TRL's DPO does the
same over its completion mask), and with the frozen reference model's log-probabilities
``ref`` (computed once, :func:`reference_logps`) the implicit rewards are ``r = logp - ref``.

With ``z = log Σ_j exp(β (r_j - r_w))`` over the rejected rows j of one prompt (w = chosen):

    sigmoid  L = -(1-ε) log σ(-z) - ε log σ(z)                 (ε = label_smoothing)
    robust   L = (-(1-ε) log σ(-z) + ε log σ(z)) / (1 - 2ε)     (rDPO, Chowdhury et al. 2024)

For K = 1, ``-z = β (r_w - r_l)`` and ``sigmoid`` with ε = 0 is the DPO loss of Rafailov et al.
(TRL ``loss_type="sigmoid"``); ε > 0 is conservative DPO (older TRL's label smoothing); ``robust``
is TRL's ``loss_type="robust"``. For K > 1 it is S-DPO (Chen et al. 2024, softmax over the
rejected items: ``-log σ(-log Σ_j exp(β (r_j - r_w))))``. ``reference_free`` sets ``ref = 0``
(off by default, as in TRL).

    samples = preference_samples(chosen, rejected_lists)          # PreferenceSample per prompt
    reference_logps(model, samples, pad_id)                         # fills sample.ref_logps
    trainer = Trainer(model, DPOObjective(DPOConfig()), tcfg, run_dir, pad_id, seed,
                      collate_fn=collate_preferences)
    trainer.fit(samples, validate=None)

The objective returns the **sum** of its per-prompt losses and normalises by the number of
prompts, so the trainer's loss is the mean over the prompts of an optimiser step (micro-batches
and processes included), like TRL's mean over its batch. It is not in the SFT objective registry
(``train.objective.name``): it needs preference rows, built by :mod:`recbias.llmrec.sprec`.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Literal

import torch
import torch.nn.functional as F

from recbias.config import Config, spec
from recbias.lm.batching import Batch, TokenizedSample, collate
from recbias.lm.loading import autocast
from recbias.objectives.base import ObjectiveBase
from recbias.prompts import EncodedPrompt, PromptBuilder, Span


@dataclass
class DPOConfig(Config):
    """DPO / S-DPO settings, ``[sprec.dpo]`` (TRL's names and defaults where TRL has them)."""

    beta: float = field(
        default=0.1, metadata=spec("β: strength of the KL anchor to the reference", gt=0)
    )
    loss_type: Literal["sigmoid", "robust"] = field(
        default="sigmoid",
        metadata={"help": "sigmoid = DPO (S-DPO with several rejected items); robust = rDPO"},
    )
    label_smoothing: float = field(
        default=0.0,
        metadata=spec(
            "ε: probability that a preference is flipped (conservative DPO for sigmoid, "
            "rDPO for robust); 0 = plain DPO",
            ge=0,
            lt=0.5,
        ),
    )
    reference_free: bool = field(
        default=False, metadata={"help": "use a uniform reference (ref log-probs = 0)"}
    )
    disable_dropout: bool = field(
        default=True, metadata={"help": "set dropout to 0 while training DPO (TRL's default)"}
    )


# ---------------------------------------------------------------------------------------------
# The loss on sequence log-probabilities


def preference_loss(
    logps: torch.Tensor, ref_logps: torch.Tensor, cfg: DPOConfig
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-prompt losses [P] and rewards β·(logp - ref) [P, 1+K].

    ``logps``, ``ref_logps``: [P, 1+K] sequence log-probs; column 0 is the chosen row, columns
    1..K the rejected rows.
    """
    ref = torch.zeros_like(ref_logps) if cfg.reference_free else ref_logps
    rewards = cfg.beta * (logps - ref)
    z = torch.logsumexp(rewards[:, 1:] - rewards[:, :1], dim=1)  # [P]
    eps = cfg.label_smoothing
    if cfg.loss_type == "robust":
        loss = (-(1 - eps) * F.logsigmoid(-z) + eps * F.logsigmoid(z)) / (1 - 2 * eps)
    else:
        loss = -(1 - eps) * F.logsigmoid(-z) - eps * F.logsigmoid(z)
    return loss, rewards


def token_logps(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """[n_tok] log p(label) from [n_tok, vocab] logits (fp32)."""
    return torch.log_softmax(logits.float(), dim=-1).gather(1, labels[:, None]).squeeze(1)


def sequence_logps(
    logits: torch.Tensor, labels: torch.Tensor, rows: torch.Tensor, n_rows: int
) -> torch.Tensor:
    """[n_rows] sums of the target-token log-probs of each row (``rows``: [n_tok] row index)."""
    out = torch.zeros(n_rows, dtype=torch.float32, device=logits.device)
    return out.index_add(0, rows, token_logps(logits, labels))


# ---------------------------------------------------------------------------------------------
# Preference samples and their batches


@dataclass
class PreferenceSample:
    """One prompt with its chosen row and K rejected rows (same prompt tokens in every row).

    ``ref_logps``: [1+K] the reference model's sequence log-probs of the rows (None until
    :func:`reference_logps` fills it).
    """

    chosen: TokenizedSample
    rejected: list[TokenizedSample]
    ref_logps: torch.Tensor | None = None

    @property
    def rows(self) -> list[TokenizedSample]:
        return [self.chosen, *self.rejected]

    @property
    def length(self) -> int:
        """Tokens of all rows (the trainer's length bucketing groups similar sizes)."""
        return sum(r.length for r in self.rows)

    @property
    def sample_id(self) -> int:
        return self.chosen.sample_id


def with_target(builder: PromptBuilder, sample: TokenizedSample, item: int, title: str):
    """``sample``'s prompt with another target item (tokenised as an SFT target)."""
    enc = sample.prompt
    target = builder.encode_target(title)
    n = len(enc.input_ids)
    spans = [s for s in enc.spans if s.kind != "target"] + [Span("target", n, n + len(target))]
    prompt = EncodedPrompt(list(enc.input_ids), spans, target)
    return TokenizedSample(sample.sample_id, item, prompt)


def collate_preferences(samples: Sequence[PreferenceSample], pad_id: int) -> Batch:
    """A micro-batch of all rows, prompt-major (chosen, rejected 1..K of prompt 0, then prompt 1).

    ``meta["ref_logps"]``: [P, 1+K]; ``meta["sample"]`` maps each supervised token to its row.
    Every prompt of a batch must have the same K.
    """
    ks = {len(s.rejected) for s in samples}
    if len(ks) != 1:
        raise ValueError(f"preference batch mixes numbers of rejected rows: {sorted(ks)}")
    batch = collate([row for s in samples for row in s.rows], pad_id)
    if all(s.ref_logps is not None for s in samples):
        batch.meta["ref_logps"] = torch.stack([s.ref_logps for s in samples]).float()
    return batch


@torch.no_grad()
def reference_logps(
    model: torch.nn.Module,
    samples: Sequence[PreferenceSample],
    pad_id: int,
    dtype: str = "fp32",
    batch_size: int = 8,
    share_prefix: bool = True,
) -> None:
    """Fill every sample's ``ref_logps`` with ``model``'s sequence log-probs (eval mode).

    ``share_prefix``: compute the rows' common prompt tokens once per batch, as the trainer does
    (:func:`recbias.train.loop.target_logits`; same result up to summation order).
    """
    from recbias.lm.forward import target_logits

    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    for start in range(0, len(samples), batch_size):
        chunk = samples[start : start + batch_size]
        batch = collate_preferences(chunk, pad_id)
        batch.input_ids = batch.input_ids.to(device)
        batch.attention_mask = batch.attention_mask.to(device)
        batch.labels = batch.labels.to(device)
        with autocast(dtype, device):
            logits = target_logits(model, batch, share_prefix=share_prefix)
        rows = batch.meta["sample"].to(device)
        seq = sequence_logps(logits, batch.target_labels, rows, batch.input_ids.shape[0])
        for i, s in enumerate(seq.cpu().view(len(chunk), -1)):
            chunk[i].ref_logps = s.clone()
    model.train(was_training)


@contextmanager
def dropout_disabled(model: torch.nn.Module, enabled: bool = True) -> Iterator[None]:
    """Set every ``nn.Dropout``'s p to 0 inside the block (TRL's ``disable_dropout``)."""
    changed = (
        [(m, m.p) for m in model.modules() if isinstance(m, torch.nn.Dropout)] if enabled else []
    )
    for m, _ in changed:
        m.p = 0.0
    try:
        yield
    finally:
        for m, p in changed:
            m.p = p


# ---------------------------------------------------------------------------------------------
# The objective


class DPOObjective(ObjectiveBase):
    """DPO / S-DPO over the rows of :func:`collate_preferences` batches.

    ``stats()`` are the means over the prompts of the last optimiser step on this process:
    ``rewards/chosen``, ``rewards/rejected`` (β·log-ratio), ``rewards/margins`` (chosen minus the
    best rejected), ``rewards/accuracies`` (chosen above every rejected), ``logps/chosen``,
    ``logps/rejected`` and ``dpo_loss`` (this process's loss); for K = 1 these are TRL's logged quantities.
    """

    name = "dpo"
    _KEYS = (
        "dpo_loss",
        "rewards/chosen",
        "rewards/rejected",
        "rewards/margins",
        "rewards/accuracies",
        "logps/chosen",
        "logps/rejected",
    )

    def __init__(self, cfg: DPOConfig | None = None) -> None:
        self.cfg = cfg or DPOConfig()
        self.begin_step()

    def begin_step(self) -> None:
        self._sums = torch.zeros(len(self._KEYS), dtype=torch.float64)
        self._count = 0

    def normaliser(self, labels: torch.Tensor, meta: dict[str, torch.Tensor]) -> torch.Tensor:
        return torch.tensor(float(meta["ref_logps"].shape[0]))

    def __call__(
        self, logits: torch.Tensor, labels: torch.Tensor, meta: dict[str, torch.Tensor]
    ) -> torch.Tensor:
        ref = meta.get("ref_logps")
        if ref is None:
            raise ValueError("DPO batch without reference log-probs (run reference_logps first)")
        seq = sequence_logps(logits, labels, meta["sample"], ref.numel()).view_as(ref)
        loss, rewards = preference_loss(seq, ref, self.cfg)
        self._record(loss.detach(), rewards.detach(), seq.detach())
        return loss.sum()

    def _record(self, loss: torch.Tensor, rewards: torch.Tensor, seq: torch.Tensor) -> None:
        best_rejected = rewards[:, 1:].max(dim=1).values
        values = [
            loss,
            rewards[:, 0],
            rewards[:, 1:].mean(dim=1),
            rewards[:, 0] - best_rejected,
            (rewards[:, 0] > best_rejected).float(),
            seq[:, 0],
            seq[:, 1:].mean(dim=1),
        ]
        self._sums += torch.stack([v.double().sum() for v in values]).cpu()
        self._count += int(loss.numel())

    def stats(self) -> dict[str, torch.Tensor]:
        means = self._sums / max(self._count, 1)
        return dict(zip(self._KEYS, means, strict=True))
