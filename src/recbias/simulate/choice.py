"""Organic user choices: argmax, multinomial logit and a position-based click model (PBM).

Over a ranked candidate list ``c_1 … c_m`` with organic utilities ``u_1 … u_m``:

* ``argmax``: the highest-utility candidate (the top ``per_round`` ones for several choices);
* ``logit``:  P(c_r) ∝ exp(u_r / τ)                        (→ argmax as τ → 0);
* ``pbm``:    P(c_r) ∝ decay^(r-1) · exp(u_r / τ)          (examination × attraction, SARDINE's
  tdPBM propensities ``decay^rank``; decay = 1 is the logit).

The candidate list is the recommender's slate (``pool = "slate"``, ranked by the recommender) or
the whole catalog (``pool = "catalog"``: users choose as if there were no recommender, the organic
source of Prop. 4.6; for PBM the list is the user's own top ``pbm_depth`` items by utility).
Catalog choices do not depend on the slate, so they are drawn once for all rounds up front: one
chunked pass over the utility matrix instead of one per round.

    chooser = OrganicChooser(world, cfg.choice, rounds=20, gen=gen, chunk=4096)
    picks = chooser.choose(slates, round_=3)       # [n_users, per_round] int64
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from recbias.simulate.config import ChoiceConfig
from recbias.simulate.world import World, sample_logit


def choice_probabilities(utils: Tensor, model: str, temperature: float, decay: float) -> Tensor:
    """P(choose candidate r) for ranked candidates: utils [n, m] → probabilities [n, m]."""
    if model == "argmax":
        return torch.zeros_like(utils).scatter_(1, utils.argmax(dim=1, keepdim=True), 1.0)
    logits = utils / temperature
    if model == "pbm":
        ranks = torch.arange(utils.shape[1], dtype=utils.dtype)
        logits = logits + ranks * float(np.log(decay))
    return torch.softmax(logits, dim=1)


def choose_positions(utils: Tensor, cfg: ChoiceConfig, n: int, gen: torch.Generator) -> Tensor:
    """Indices of ``n`` chosen candidates per row: utils [b, m] → [b, n] int64."""
    if cfg.model == "argmax":
        return torch.topk(utils, min(n, utils.shape[1]), dim=1).indices
    probs = choice_probabilities(utils, cfg.model, cfg.temperature, cfg.pbm_decay)
    return torch.multinomial(probs, n, replacement=True, generator=gen)


class OrganicChooser:
    """Organic choices of every user in every round (see the module docstring)."""

    def __init__(
        self, world: World, cfg: ChoiceConfig, rounds: int, gen: torch.Generator, chunk: int
    ) -> None:
        self.world, self.cfg, self.gen, self.chunk = world, cfg, gen, chunk
        self._fixed: Tensor | None = None  # catalog argmax / logit: [n_users, per_round or R·c]
        self._ranked: tuple[Tensor, Tensor] | None = None  # catalog pbm: items, utils [n, depth]
        if cfg.pool == "catalog":
            self._precompute(rounds)

    def _precompute(self, rounds: int) -> None:
        cfg, world = self.cfg, self.world
        if cfg.model == "logit":
            draws = rounds * cfg.per_round
            self._fixed = sample_logit(world, draws, cfg.temperature, self.gen, self.chunk)
            return
        depth = cfg.per_round if cfg.model == "argmax" else cfg.pbm_depth
        items, utils = [], []
        for start in range(0, world.n_users, self.chunk):
            users = np.arange(start, min(start + self.chunk, world.n_users))
            top = torch.topk(world.utilities(users), min(depth, world.n_items), dim=1)
            items.append(top.indices)
            utils.append(top.values)
        if cfg.model == "argmax":
            self._fixed = torch.cat(items)
        else:
            self._ranked = (torch.cat(items), torch.cat(utils))

    def choose(self, slates: Tensor, round_: int) -> Tensor:
        """Organic picks of round ``round_`` (1-based): slates [n_users, k] → [n_users, c]."""
        c = self.cfg.per_round
        if self._fixed is not None and self.cfg.model == "argmax":
            return self._fixed
        if self._fixed is not None:
            return self._fixed[:, (round_ - 1) * c : round_ * c]
        if self._ranked is not None:
            items, utils = self._ranked
        else:
            items, utils = slates, self._slate_utilities(slates)
        pos = choose_positions(utils, self.cfg, c, self.gen)
        return torch.gather(items, 1, pos)

    def _slate_utilities(self, slates: Tensor) -> Tensor:
        parts = []
        for start in range(0, slates.shape[0], self.chunk):
            stop = min(start + self.chunk, slates.shape[0])
            parts.append(self.world.slate_utilities(np.arange(start, stop), slates[start:stop]))
        return torch.cat(parts)
