"""MSL: softmax over the trie-valid next tokens only, with temperature (MSL Eq. 5; peer notes §4.4).

    ℓ_t = −z_y/τ + log Σ_{v ∈ A(y_<t)} exp(z_v/τ),      L = Σ_t ℓ_t / n_target_tokens

``A(y_<t)`` = children of the trie node reached by the first t−1 target tokens (the item trie of
the decoding candidates, ``ctx.trie``). Positions with a single valid token have ℓ_t = 0 exactly
(MSL still counts them in the denominator). Computed with ``logsumexp`` (MSL exponentiates
directly and can overflow); a target off the trie is an error (MSL would get an infinite loss).
Defaults: τ = 4.5 (MSL's README).

**ATS** (``ats = true``, MSL's ``train_trie_token_adatau.py``): the loss becomes
``τ · Σ_t ℓ_t / #{t : |A| > 1}`` and τ adapts. From the logits at the first-title-token
positions — here exactly the positions at the first branching trie node, with ``N_first`` =
its number of children — take μ_pos (target logits), μ_neg and σ²_neg (every valid logit of those
rows, the target's included, as MSL's code), ``C = log(N_first·η)`` and

    τ* = (Δμ + sqrt(max(Δμ² − 2Cσ²_neg, 0))) / (2C),   clamped to [1.5, 5], detached,
    τ ← (1 − α)·τ + α·τ*                                (EMA α = 0.05, initial τ = 1.5).

MSL updates τ per micro-batch before using it; here the statistics are summed over the whole
effective batch (and across ranks) and the EMA step is applied before the next optimiser step, so
accumulation does not change training: step k uses the τ built from steps < k. If ``C ≤ 0``
(``N_first·η ≤ 1``) τ* is undefined and τ stays at its initial value.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field

import torch

from recbias.config import Config, invalid, spec
from recbias.decoding.trie import ItemTrie
from recbias.lm.batching import Batch
from recbias.objectives import information_gain as ig
from recbias.objectives.base import ObjectiveBase, ObjectiveContext
from recbias.train import distributed

log = logging.getLogger(__name__)


def restricted_cross_entropy(
    logits: torch.Tensor,
    labels: torch.Tensor,
    allowed: torch.Tensor,
    valid: torch.Tensor,
    tau: float | torch.Tensor,
) -> torch.Tensor:
    """Per-token ``−z_y/τ + logsumexp_{valid}(z/τ)``: ``[n]``.

    ``logits: [n, V]``, ``labels: [n]``, ``allowed: [n, D]`` token ids (padding masked by
    ``valid: [n, D]``). The label must be among its row's allowed tokens.
    """
    scaled = (logits.gather(1, allowed) / tau).masked_fill(~valid, -torch.inf)
    return torch.logsumexp(scaled, dim=1) - logits.gather(1, labels[:, None]).squeeze(1) / tau


@dataclass
class MSLConfig(Config):
    """Defaults: τ = 4.5 (MSL README); ATS off, with MSL's code defaults when on."""

    tau: float = field(default=4.5, metadata=spec("softmax temperature; 1 = no scaling", gt=0))
    ats: bool = field(default=False, metadata={"help": "adaptive temperature (MSL's ATS)"})
    ats_initial_tau: float = field(default=1.5, metadata=spec("ATS: starting temperature", gt=0))
    ats_eta: float = field(default=0.25, metadata=spec("ATS: η in C = log(N_first·η)", gt=0))
    ats_ema: float = field(default=0.05, metadata=spec("ATS: EMA rate α of τ", gt=0, le=1))
    ats_min_tau: float = field(default=1.5, metadata=spec("ATS: lower clamp of τ*", gt=0))
    ats_max_tau: float = field(default=5.0, metadata=spec("ATS: upper clamp of τ*; >= ats_min_tau"))
    ats_warmup_steps: int = field(
        default=0, metadata=spec("ATS: optimiser steps that keep the initial τ", ge=0)
    )

    def check(self) -> None:
        if self.ats_max_tau < self.ats_min_tau:
            raise invalid(
                "ats_max_tau", f"must be >= ats_min_tau ({self.ats_min_tau})", self.ats_max_tau
            )


def ats_temperature(diff: torch.Tensor, var_neg: torch.Tensor, c: float) -> torch.Tensor:
    """ATS's τ* = (Δμ + sqrt(max(Δμ² − 2·C·σ²_neg, 0))) / (2C), before clamping (C > 0)."""
    return (diff + torch.sqrt(torch.clamp(diff**2 - 2 * c * var_neg, min=0))) / (2 * c)


def first_branch(trie: ItemTrie) -> int:
    """The first node below the root with more than one child (the first title decision)."""
    node, ptr = 0, trie.child_ptr.tolist()
    while ptr[node + 1] - ptr[node] == 1:
        node = int(trie.child_node[ptr[node]])
    return node


class MSLObjective(ObjectiveBase):
    name = "msl"

    def __init__(self, cfg: MSLConfig | None = None) -> None:
        self.cfg = cfg or MSLConfig()
        self.cfg.validate()
        self._nodes: ig.SampleTable | None = None
        self._trie: ItemTrie | None = None
        self._copies: dict[str, ItemTrie] = {}  # the trie on each device it was used on
        self._device = torch.device("cpu")  # where the loss last ran: τ's updates run there
        self.tau = torch.tensor(self.cfg.ats_initial_tau if self.cfg.ats else self.cfg.tau)
        self._sums: torch.Tensor | None = None  # ATS: [n_pos, Σpos, n_neg, Σneg, Σneg²]
        self._step_open = False  # ATS: a step's normalisers ran; its EMA update is pending
        self._updates = 0

    def setup(self, ctx: ObjectiveContext) -> None:
        self._trie = ctx.trie.to("cpu")
        self._copies = {}
        nodes, lengths = ig.walk_samples(self._trie, ctx.samples, ctx.titles, "decoding trie")
        ids = torch.tensor([s.sample_id for s in ctx.samples], dtype=torch.long)
        self._nodes = ig.SampleTable(ids, ig.parent_nodes(nodes, lengths))
        self._first = first_branch(self._trie)
        n_first = len(self._trie.allowed(self._first))
        self._c = math.log(n_first * self.cfg.ats_eta) if n_first * self.cfg.ats_eta > 0 else 0.0
        if self.cfg.ats and self._c <= 0:
            log.warning("MSL ATS: N_first·η = %s <= 1, τ stays fixed", n_first * self.cfg.ats_eta)

    def stats(self) -> dict[str, torch.Tensor]:
        return {"msl_tau": self.tau.detach().clone()} if self.cfg.ats else {}

    def _trie_on(self, device: torch.device) -> ItemTrie:
        """The trie on ``device``: one copy per device, kept (prepare runs on the host, the loss on
        the accelerator; moving one copy back and forth would copy it twice per micro-batch)."""
        assert self._trie is not None
        key = str(device)
        if key not in self._copies:
            self._copies[key] = self._trie if self._trie.device == device else self._trie.to(device)
        return self._copies[key]

    def prepare(self, batch: Batch) -> None:
        if self._nodes is None:
            raise RuntimeError("MSLObjective.setup must run before training")
        # Every rank runs prepare/normaliser on every micro-batch (the forward only on its
        # share), so the first prepare after a normaliser opens a new step on all ranks at once.
        if self._step_open:
            self._step_open = False
            self._update_tau()
        node = self._nodes.lookup(batch)
        trie = self._trie_on(node.device)
        batch.meta["msl_node"] = node
        batch.meta["msl_degree"] = trie.child_ptr[node + 1] - trie.child_ptr[node]

    def normaliser(self, labels: torch.Tensor, meta: dict[str, torch.Tensor]) -> torch.Tensor:
        if self.cfg.ats:
            self._step_open = True
            return (meta["msl_degree"] > 1).sum().float()
        return torch.tensor(float(labels.numel()))

    def state_dict(self) -> dict[str, torch.Tensor]:
        """The adaptive τ and its update count (ATS), so a resumed run continues them."""
        state = {
            "tau": self.tau.detach().cpu(),
            "updates": torch.tensor(self._updates),
            "pending": torch.tensor(self._step_open),
        }
        if self._sums is not None:  # statistics of the last step, applied at the next one
            state["sums"] = self._sums.detach().cpu()
        return state

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        if state:
            self.tau = state["tau"].float()
            self._updates = int(state["updates"])
            self._sums = state.get("sums")
            self._step_open = bool(state["pending"])

    def token_losses(
        self, logits: torch.Tensor, labels: torch.Tensor, meta: dict[str, torch.Tensor]
    ) -> torch.Tensor:
        """[n_tok] MSL loss of every target token at the fixed τ (used by MSL+GDRT)."""
        allowed, _, valid = self._trie_on(logits.device).edges(meta["msl_node"])
        tau = self.tau.to(logits.device)
        return restricted_cross_entropy(logits.float(), labels, allowed, valid, tau)

    def __call__(
        self, logits: torch.Tensor, labels: torch.Tensor, meta: dict[str, torch.Tensor]
    ) -> torch.Tensor:
        node = meta["msl_node"]
        self._device = logits.device
        allowed, _, valid = self._trie_on(logits.device).edges(node)
        tau = self.tau.to(logits.device)
        loss = restricted_cross_entropy(logits.float(), labels, allowed, valid, tau).sum()
        if not self.cfg.ats:
            return loss
        self._accumulate(logits.detach(), labels, allowed, valid, node == self._first)
        return tau * loss

    def _accumulate(
        self,
        logits: torch.Tensor,
        labels: torch.Tensor,
        allowed: torch.Tensor,
        valid: torch.Tensor,
        rows: torch.Tensor,
    ) -> None:
        """Add the first-title-token logit statistics of one micro-batch (float64, no .item())."""
        pos = logits[rows].gather(1, labels[rows, None]).squeeze(1).double()
        neg = logits[rows].gather(1, allowed[rows])[valid[rows]].double()
        n_pos, n_neg = pos.new_tensor(pos.numel()), neg.new_tensor(neg.numel())
        sums = torch.stack([n_pos, pos.sum(), n_neg, neg.sum(), (neg * neg).sum()])
        self._sums = sums if self._sums is None else self._sums + sums.to(self._sums.device)

    def _update_tau(self) -> None:
        """One EMA step of τ from the summed statistics of the last optimiser step."""
        device = self._device
        sums = torch.zeros(5, dtype=torch.float64) if self._sums is None else self._sums
        sums = sums.to(device)
        n_pos, s_pos, n_neg, s_neg, ss_neg = distributed.sum_scalar(sums)  # all ranks, in step
        self._sums = None
        self._updates += 1
        if self._c <= 0 or self._updates <= self.cfg.ats_warmup_steps:
            return
        mu_pos, mu_neg = s_pos / n_pos.clamp_min(1), s_neg / n_neg.clamp_min(1)
        var_neg = (ss_neg - n_neg * mu_neg**2) / (n_neg - 1).clamp_min(1)
        star = ats_temperature(mu_pos - mu_neg, var_neg, self._c)
        star = star.clamp(self.cfg.ats_min_tau, self.cfg.ats_max_tau)
        new = (1 - self.cfg.ats_ema) * self.tau.to(star.device) + self.cfg.ats_ema * star
        usable = (n_pos > 0) & (n_neg > 1)
        self.tau = torch.where(usable, new, self.tau.to(star.device)).float()
