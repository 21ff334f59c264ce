"""GDRT: Group-DRO tuning over token groups of different relevance to the auxiliary tokens.

GDRT (§3, Eq. 4-5 and Lemma 1) groups the training target tokens by their relevance r (Eq. 3,
:mod:`recbias.objectives.relevance`) and minimises the closed form of the KL-constrained
Group-DRO objective:

    L_GDRT = Σ_g Q(g) · L(g),   L(g) = mean CE over the tokens of group g,
    Q(g)   = exp(L(g)/τ) / Σ_g' exp(L(g')/τ)                                          (Eq. 5)

Q is treated as a constant (detached): its gradient is then Σ_g Q(g)∇L(g), the gradient of the
dual form τ·log E_U exp(L(g)/τ) (Eq. 11). Groups with no token in the batch get Q = 0 and the
softmax runs over the present groups. All defaults are a reading of the paper, unverified against
reference code (none is public): K-means with G = 5 (the paper tunes G in {2, 5, 10}), τ = 0.5
(tuned in {0.1, 0.2, 0.3, 0.5, 1.0}; §4.4 reports accuracy rising then falling with τ, small τ
overfitting the worst group; with group-loss gaps of ~1 nat, 0.5 already gives the worst group
most of the weight without putting all of it there), r from the model before tuning, Q from the
current effective batch.

    [train.objective]
    name = "gdrt"
    gdrt = { groups = 5, grouping = "kmeans", tau = 0.5 }

**Semantics under accumulation.** The "batch" of Eq. 5 is the *effective* batch of an optimiser
step, whatever its split into micro-batches (and processes). The trainer prepares every
micro-batch of a step before the first forward, so the group counts n_g and N = Σ_g n_g of the
effective batch are known from :meth:`GDRTObjective.prepare`. Each token then gets the weight
w_t = Q(g_t)·N/n_{g_t}; the numerator is Σ_t w_t·CE_t and the normaliser the token count, so the
trainer's Σ numerators / N equals Σ_g Q(g)L(g). Q comes from ``weights_from``:

- ``"batch"`` (default, the paper): the effective batch's own detached group losses. With one
  micro-batch per step and process these are read off its logits; otherwise the first call of a
  step also runs a no-grad forward over this process's other micro-batches of the step (k-1 of
  k micro-batches, about a quarter of a training step extra for k = 4), and the per-group sums
  are added across processes. Q, the loss and the update then equal those of the same effective
  batch run as one micro-batch. (With dropout on, that pass sees other dropout masks than the
  gradient pass; Q is detached anyway.)
- ``"previous"`` (lagged): the group losses of the previous step (no extra forward; Q lags one
  step); a group not seen yet takes the mean estimate of the present groups (uniform at the
  first step).
- ``"auto"``: ``"batch"`` for a step of one micro-batch per process (exact and free),
  ``"previous"`` for a step of several (the default before Q was made exact under accumulation:
  GDRT then costs what SFT costs, and Q lags one step).

``ema = η`` replaces the losses by a running estimate L̂_g ← (1-η)L̂_g + η·L_g updated with every
step in which g is present (first value: L_g). The estimates are reset when the groups change
(``relevance_model = "refresh"``). Estimates and groups are checkpointed: a resumed run goes on
with the groups it had, rather than recomputing them with the mid-epoch model.
A step starts with the first ``prepare`` after the previous step's ``normaliser`` or ``__call__``
(what :class:`recbias.train.loop.Trainer` does); :meth:`begin_step` makes that explicit. With
several processes every process needs at least one micro-batch per step (grad_accum ≥ world size).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any, Literal

import torch
import torch.nn.functional as F

from recbias import distributed
from recbias.config import Config, spec
from recbias.errors import RecbiasError
from recbias.lm.batching import Batch
from recbias.lm.loading import autocast
from recbias.objectives.base import ObjectiveContext
from recbias.objectives.relevance import (
    GroupMethod,
    group_table,
    relevance_groups,
    token_relevance,
)

log = logging.getLogger(__name__)


@dataclass
class GDRTConfig(Config):
    """GDRT (Group-DRO tuning) settings; defaults are the paper's reading (module docstring)."""

    groups: int = field(
        default=5, metadata=spec("number of relevance groups G (paper tunes 2, 5, 10)", ge=1)
    )
    grouping: GroupMethod = field(
        default="kmeans",
        metadata={"help": "kmeans (paper) or quantile (equal-frequency bins, footnote 2)"},
    )
    tau: float = field(
        default=0.5, metadata=spec("temperature τ of Q = softmax(L/τ) (paper tunes 0.1-1.0)", gt=0)
    )
    ema: float | None = field(
        default=None,
        metadata=spec(
            "η of a running estimate of the group losses used for Q; none = off", gt=0, le=1
        ),
    )
    weights_from: Literal["batch", "previous", "auto"] = field(
        default="batch",
        metadata={
            "help": "batch = Q from this step's whole effective batch (paper, exact under "
            "accumulation: a no-grad forward over the step's other micro-batches); previous = "
            "from the previous step's (lagged, no extra forward); auto = batch with one "
            "micro-batch per step and process, else previous"
        },
    )
    relevance_model: Literal["initial", "refresh"] = field(
        default="initial",
        metadata={
            "help": "initial = r from the model before tuning; refresh = also recompute "
            "r and the groups with the current model every refresh_every epochs"
        },
    )
    refresh_every: int = field(default=1, metadata=spec("epochs between relevance refreshes", ge=1))
    placeholder: str | None = field(
        default=None,
        metadata={"help": "text replacing the history in Eq. 3 (default: prompt's placeholder)"},
    )
    relevance_batch_size: int = field(
        default=32, metadata=spec("target items per forward pass of the relevance pass", ge=1)
    )
    kmeans_n_init: int = field(default=10, metadata=spec("K-means restarts (scikit-learn)", ge=1))
    seed: int = field(default=0, metadata={"help": "K-means random_state"})


def group_weights(losses: torch.Tensor, present: torch.Tensor, tau: float) -> torch.Tensor:
    """Eq. 5: Q = softmax(L/τ) over the present groups, 0 elsewhere. [G], [G] bool -> [G]

    ``torch.softmax`` subtracts the maximum, so tiny τ stays finite; the losses are detached.
    """
    logits = (losses.detach().float() / tau).masked_fill(~present, float("-inf"))
    return torch.softmax(logits, dim=0)


def token_weights(q: torch.Tensor, counts: torch.Tensor) -> torch.Tensor:
    """Per-group token weight Q(g)·N/n_g ([G]; 0 for absent groups): Σ_t w·CE / N = Σ_g Q(g)L(g)."""
    total = counts.sum()
    return torch.where(counts > 0, q * total / counts.clamp_min(1), torch.zeros_like(q))


def group_sums(ce: torch.Tensor, group: torch.Tensor, n_groups: int) -> torch.Tensor:
    """Σ CE per group. ``ce, group: [n_tok]`` -> ``[G]``"""
    return torch.zeros(n_groups, device=ce.device).index_add_(0, group, ce.detach().float())


@dataclass
class _Step:
    """The effective batch being trained: its micro-batches and per-group token counts."""

    batches: list[Batch]
    counts: torch.Tensor  # [G] tokens of each group in the effective batch (all processes)
    closed: bool = False  # True once the step's first normaliser/__call__ has run
    calls: int = 0
    weights: torch.Tensor | None = None  # [G] per-token weight, set at the first call
    sums: torch.Tensor | None = None  # [G] CE sums of this process ("previous" mode)


class GDRTObjective:
    """Σ_g Q(g)·L(g) over relevance groups of target tokens (module docstring for semantics)."""

    name = "gdrt"

    def __init__(self, cfg: GDRTConfig | None = None, base: Any = None) -> None:
        """``base``: an objective whose per-token losses replace CE inside the groups (it must
        have ``setup``, ``prepare`` and ``token_losses``), e.g. MSL for MSL+GDRT."""
        self.cfg = cfg or GDRTConfig()
        self.cfg.validate()
        self.base = base
        self._ctx: ObjectiveContext | None = None
        self._table: torch.Tensor | None = None  # [n_items, T] group of (target item, position)
        self._step: _Step | None = None
        self._estimate = torch.full((self.cfg.groups,), float("nan"))  # L̂_g, NaN = unseen
        self._last = {
            "loss": torch.zeros(self.cfg.groups),
            "weight": torch.zeros(self.cfg.groups),
            "tokens": torch.zeros(self.cfg.groups),
        }

    # -- relevance and groups -------------------------------------------------------------------
    def setup(self, ctx: ObjectiveContext) -> None:
        """Relevance (Eq. 3) with the model before tuning, then the groups."""
        self._ctx = ctx
        if self.base is not None:
            self.base.setup(ctx)
        self._assign_groups(ctx.model)

    def on_epoch_start(self, epoch: int, model: torch.nn.Module) -> None:
        cfg = self.cfg
        if cfg.relevance_model == "refresh" and epoch > 0 and epoch % cfg.refresh_every == 0:
            self._assign_groups(model)

    def _assign_groups(self, model: torch.nn.Module) -> None:
        ctx = self._require_setup()
        cfg = self.cfg
        rel = token_relevance(
            model, ctx.builder, ctx.samples, ctx.dtype, cfg.relevance_batch_size, cfg.placeholder
        )
        groups = relevance_groups(rel, cfg.groups, cfg.grouping, cfg.seed, cfg.kmeans_n_init)
        found = int(groups.max()) + 1
        if found < cfg.groups:
            log.warning(
                "gdrt: ties in the relevance values leave %d of %d groups", found, cfg.groups
            )
        self._table = group_table(rel, groups, len(ctx.titles))
        self._estimate = torch.full((cfg.groups,), float("nan"))
        self._step = None

    def _require_setup(self) -> ObjectiveContext:
        if self._ctx is None:
            raise RecbiasError("gdrt: call setup(ObjectiveContext) before training")
        return self._ctx

    # -- the token-level hook -------------------------------------------------------------------
    def begin_step(self) -> None:
        """Start an optimiser step: the next ``prepare`` opens a new effective batch."""
        self._step = None

    def prepare(self, batch: Batch) -> None:
        """Add ``meta["gdrt_group"]`` [n_tok] and count the step's tokens per group."""
        if self._table is None:
            raise RecbiasError("gdrt: call setup(ObjectiveContext) before training")
        device = batch.meta["sample"].device
        self._table = self._table.to(device)  # moved once, then a no-op
        items = batch.target_items.to(device)[batch.meta["sample"]]
        group = self._table[items, batch.meta["position"]]
        if bool((group < 0).any()):
            raise RecbiasError("gdrt: a batch holds a target that was not in the setup samples")
        batch.meta["gdrt_group"] = group
        if self.base is not None:
            self.base.prepare(batch)
        counts = torch.bincount(group, minlength=self.cfg.groups).float()
        if self._step is None or self._step.closed:
            self._step = _Step([], torch.zeros_like(counts))
        self._step.batches.append(batch)
        self._step.counts += counts

    def normaliser(self, labels: torch.Tensor, meta: dict[str, torch.Tensor]) -> torch.Tensor:
        self._close()
        return torch.tensor(float(labels.numel()))

    def __call__(
        self, logits: torch.Tensor, labels: torch.Tensor, meta: dict[str, torch.Tensor]
    ) -> torch.Tensor:
        step = self._close()
        if step.counts.device != logits.device:  # counted on the host by prepare: moved once
            step.counts = step.counts.to(logits.device, non_blocking=True)
        ce = self._token_losses(logits, labels, meta)
        group = meta["gdrt_group"]
        if step.weights is None:
            step.weights = self._weights(step, ce, meta)
        step.calls += 1
        if self._mode(step) == "previous":
            self._accumulate(step, group_sums(ce, group, self.cfg.groups))
        return (step.weights[group] * ce).sum()

    def state_dict(self) -> dict[str, torch.Tensor]:
        """The running group-loss estimate and the groups in use (``refresh`` changes them)."""
        state = {"estimate": self._estimate.detach().cpu().clone()}
        if self._table is not None:
            state["table"] = self._table.detach().cpu().clone()
        return state

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        if "estimate" in state:
            self._estimate = state["estimate"].float()
        if "table" in state:  # a resumed run keeps the groups it was trained with
            self._table = state["table"].long()

    def _token_losses(
        self, logits: torch.Tensor, labels: torch.Tensor, meta: dict[str, torch.Tensor]
    ) -> torch.Tensor:
        """[n_tok] per-token loss inside the groups: CE (Eq. 4), or the base objective's."""
        if self.base is None:
            return F.cross_entropy(logits.float(), labels, reduction="none")
        return self.base.token_losses(logits, labels, meta)

    def stats(self) -> dict[str, torch.Tensor]:
        """Last step's per-group mean CE, weight Q and token count (absent groups: 0, 0, 0)."""
        return {f"gdrt_group_{k}": v.detach().cpu() for k, v in self._last.items()}

    # -- weights --------------------------------------------------------------------------------
    def _close(self) -> _Step:
        if self._step is None:
            raise RecbiasError("gdrt: call prepare(batch) on every micro-batch of a step first")
        if not self._step.closed:
            world = distributed.rank_and_world()[1]
            if len(self._step.batches) < world:
                raise RecbiasError(
                    f"gdrt needs at least one micro-batch per process per step; a step has "
                    f"{len(self._step.batches)} for {world} processes (raise train.grad_accum)"
                )
            self._step.closed = True
        return self._step

    def _mode(self, step: _Step) -> str:
        """Where Q comes from in this step: "batch" or "previous" ("auto" resolved)."""
        if self.cfg.weights_from != "auto":
            return self.cfg.weights_from
        return "batch" if len(self._share(step)) == 1 else "previous"

    def _share(self, step: _Step) -> list[Batch]:
        """This process's micro-batches of the step, dealt as the trainer deals them."""
        rank, world = distributed.rank_and_world()
        return step.batches[rank::world]

    def _weights(
        self, step: _Step, ce: torch.Tensor, meta: dict[str, torch.Tensor]
    ) -> torch.Tensor:
        present = step.counts > 0
        if self._mode(step) == "batch":
            sums = distributed.sum_scalar(self._batch_sums(step, ce, meta))
            self._observe(sums / step.counts.clamp_min(1), step)
            losses = self._estimate.to(ce.device)
        else:
            losses = self._filled_estimate(present)
        q = group_weights(losses, present, self.cfg.tau)
        self._last["weight"] = q.detach()
        return token_weights(q, step.counts)

    def _batch_sums(
        self, step: _Step, ce: torch.Tensor, meta: dict[str, torch.Tensor]
    ) -> torch.Tensor:
        """Σ CE per group over this process's share of the step (a no-grad pass for the others)."""
        share = self._share(step)
        if not any(b.meta is meta for b in share):
            raise RecbiasError("gdrt: the micro-batch was not prepared in this step")
        sums = group_sums(ce, meta["gdrt_group"], self.cfg.groups)
        others = [b for b in share if b.meta is not meta]
        calls = len(others)
        ctx = self._require_setup()
        world = distributed.rank_and_world()[1]
        if world > 1 and distributed.is_fsdp(ctx.model):
            # every FSDP forward is a collective: each rank runs as many as the fullest share
            calls = -(-len(step.batches) // world) - 1
        if calls:
            from recbias.lm.forward import target_logits

            with torch.no_grad(), autocast(ctx.dtype, ce.device):
                for i in range(calls):
                    b = others[i] if i < len(others) else share[0]
                    lg = target_logits(ctx.model, b).float()
                    if i < len(others):  # the rest only take part in the collectives
                        other_ce = self._token_losses(lg, b.target_labels, b.meta)
                        sums += group_sums(other_ce, b.meta["gdrt_group"], self.cfg.groups)
        return sums

    def _accumulate(self, step: _Step, sums: torch.Tensor) -> None:
        """Add a micro-batch's CE sums ("previous"); after this process's last one, record L_g."""
        step.sums = sums if step.sums is None else step.sums + sums
        if step.calls == len(self._share(step)):
            self._observe(distributed.sum_scalar(step.sums) / step.counts.clamp_min(1), step)

    def _observe(self, losses: torch.Tensor, step: _Step) -> None:
        """Record the step's group losses [G] (present groups) into the running estimate L̂."""
        present = step.counts > 0
        losses = losses.detach().float()
        old = self._estimate.to(losses.device)
        eta = self.cfg.ema
        new = (
            losses
            if eta is None
            else torch.where(old.isnan(), losses, (1 - eta) * old + eta * losses)
        )
        self._estimate = torch.where(present, new, old)
        self._last["loss"] = torch.where(present, losses, 0.0)
        self._last["tokens"] = step.counts.detach()

    def _filled_estimate(self, present: torch.Tensor) -> torch.Tensor:
        """L̂ with unseen groups set to the mean estimate of the present ones (0 if none known)."""
        estimate = self._estimate.to(present.device)
        known = present & ~estimate.isnan()
        # the mean over the known groups, 0 if there are none; no host synchronisation
        fill = torch.where(known, estimate, 0.0).sum() / known.sum().clamp_min(1)
        return torch.where(estimate.isnan(), fill, estimate)
