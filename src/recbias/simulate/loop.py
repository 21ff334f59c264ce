"""The closed loop: recommend → users choose → a share λ is delegated → log → retrain.

Every round r = 1 … R:

1. the scorer (fitted on the logs up to round r−1) serves a slate of k items to every user
   (chunked top-k plus the mitigations, :mod:`recbias.simulate.recommend`);
2. each user makes ``per_round`` organic choices (:mod:`recbias.simulate.choice`);
3. exactly ``round(λ · n_users · per_round)`` of these choice slots, picked at random, are
   delegated: the user takes the slate's item at that slot's position (position 0 = the
   recommender's top item; under score temperature 1 the popularity scorer's top item is a draw
   from the model's own distribution, the synthetic-data model of Prop. 4.6);
4. the round's ``n_users · per_round`` interactions are appended to the logs (``accumulate``) or
   become the logs (``replace``);
5. the scorer is refitted on the logs with the mitigation's weights (:mod:`.logs`).

Row 0 of the metrics describes the round-0 organic logs (exposure = consumption = those logs);
row r ≥ 1 the slates served and the choices made in round r (:mod:`recbias.simulate.metrics`).

    sim = Simulation(world, cfg, lam=0.5, mitigation=cfg.mitigation)
    rows = sim.run()                  # one dict of metrics per round
"""

from __future__ import annotations

import logging
import time
from typing import Any

import numpy as np
import torch
from torch import Tensor

import recbias.simulate.metrics as M
from recbias.simulate.choice import OrganicChooser
from recbias.simulate.config import MitigationConfig, SimulationConfig
from recbias.simulate.logs import Logs, dro_state, training_set
from recbias.simulate.recommend import recommend_all
from recbias.simulate.scorers import Scorer, make_scorer
from recbias.simulate.world import World

log = logging.getLogger(__name__)


class Simulation:
    """One closed-loop run for one delegation share λ and one mitigation setting."""

    def __init__(
        self,
        world: World,
        cfg: SimulationConfig,
        lam: float,
        mitigation: MitigationConfig,
        scorer: Scorer | None = None,
    ) -> None:
        self.world, self.cfg, self.lam, self.mit = world, cfg, lam, mitigation
        self.gen = torch.Generator().manual_seed(cfg.seed + 7)
        self.rng = np.random.default_rng(cfg.seed + 11)
        self.anchor = Logs.initial(world.initial_users, world.initial_items)
        self.logs = self.anchor
        self.scorer = scorer if scorer is not None else make_scorer(cfg.scorer, cfg.seed)
        chunk = cfg.scorer.chunk_size
        self.chooser = OrganicChooser(world, cfg.choice, cfg.loop.rounds, self.gen, chunk)
        groups = mitigation.dro_groups
        self.dro = (
            dro_state(self.anchor, world.n_items, groups)
            if mitigation.reweight == "group_dro"
            else None
        )
        self._init_observers()

    def _init_observers(self) -> None:
        w = self.world
        counts = np.bincount(self.anchor.items, minlength=w.n_items)
        self.head = M.head_items(counts)
        self.profile0 = M.group_profile(
            self.anchor.users, self.anchor.items, w.item_groups, w.n_users, w.n_groups
        )
        self.profile = self.profile0.copy()
        n_pairs = self.cfg.loop.jaccard_pairs
        self.pairs = M.sample_pairs(w.n_users, n_pairs, self.gen) if w.n_users > 1 else None
        self.prev_exposure = counts
        self.first_exposed: np.ndarray | None = None

    def _fit(self) -> None:
        train = training_set(self.logs, self.anchor, self.mit, self.world.n_items, self.dro)
        self.scorer.fit(train, self.world.n_users, self.world.n_items)

    def round_zero(self) -> dict[str, Any]:
        counts = np.bincount(self.anchor.items, minlength=self.world.n_items)
        row: dict[str, Any] = {"round": 0, "logs": len(self.logs), "delegated_share": 0.0}
        row |= M.concentration(counts, self.head, "exposure")
        row |= M.concentration(counts, self.head, "consumption")
        row |= {"exposure_persistence": 1.0, "dropped_items": 0, "vanished_items": 0}
        row |= {"jaccard": float("nan"), "drift_mean": 0.0, "drift_p90": 0.0, "seconds": 0.0}
        return row

    def delegate(self, slates: Tensor, organic: Tensor) -> tuple[np.ndarray, np.ndarray]:
        """Choices after delegation and the delegated mask, both [n_users · per_round]."""
        c = organic.shape[1]
        slots = organic.numel()
        mask = np.zeros(slots, bool)
        mask[self.rng.permutation(slots)[: round(self.lam * slots)]] = True
        taken = slates[:, :c].reshape(-1).numpy()
        return np.where(mask, taken, organic.reshape(-1).numpy()).astype(np.int64), mask

    def step(self, r: int) -> dict[str, Any]:
        """Play round ``r`` (1-based) and return its metrics row."""
        start = time.perf_counter()
        w, loop = self.world, self.cfg.loop
        slates = recommend_all(
            self.scorer,
            w.n_users,
            w.n_items,
            loop.k,
            self.mit,
            self.gen,
            self.cfg.scorer.chunk_size,
        )
        organic = self.chooser.choose(slates, r)
        choices, mask = self.delegate(slates, organic)
        users = np.repeat(np.arange(w.n_users), organic.shape[1])
        new = Logs(users, choices, np.full(len(users), r, np.int32), mask)
        self.logs = self.logs.append(new) if loop.mode == "accumulate" else new
        row = self._observe(r, slates, new)
        self._fit()
        row["seconds"] = time.perf_counter() - start
        return row

    def _observe(self, r: int, slates: Tensor, new: Logs) -> dict[str, Any]:
        w = self.world
        exposure = np.bincount(slates.reshape(-1).numpy(), minlength=w.n_items)
        consumption = np.bincount(new.items, minlength=w.n_items)
        if self.first_exposed is None:
            self.first_exposed = exposure > 0
        row: dict[str, Any] = {
            "round": r,
            "logs": len(self.logs),
            "delegated_share": float(new.delegated.mean()),
        }
        row |= M.concentration(exposure, self.head, "exposure")
        row |= M.concentration(consumption, self.head, "consumption")
        row["exposure_persistence"] = M.persistence(self.prev_exposure, exposure)
        row["dropped_items"] = int(np.sum((self.prev_exposure > 0) & (exposure == 0)))
        row["vanished_items"] = int(np.sum(self.first_exposed & (exposure == 0)))
        self.prev_exposure = exposure
        pairs = self.pairs
        row["jaccard"] = (
            float("nan") if pairs is None else float(M.jaccard_pairs(slates, pairs).mean())
        )
        return row | self._drift(new)

    def _drift(self, new: Logs) -> dict[str, float]:
        w, rate = self.world, self.cfg.loop.drift_rate
        now = M.group_profile(new.users, new.items, w.item_groups, w.n_users, w.n_groups)
        self.profile = (1 - rate) * self.profile + rate * now
        d = M.tv_distance(self.profile, self.profile0)
        return {"drift_mean": float(d.mean()), "drift_p90": float(np.quantile(d, 0.9))}

    def run(self) -> list[dict[str, Any]]:
        """Fit on the round-0 logs, then play every round; one metrics row per round."""
        self._fit()
        rows = [self.round_zero()]
        for r in range(1, self.cfg.loop.rounds + 1):
            rows.append(self.step(r))
            log.info(
                "λ=%.2f round %d: exposure HHI %.4f, coverage %.3f (%.1fs)",
                self.lam,
                r,
                rows[-1]["exposure_hhi"],
                rows[-1]["exposure_coverage"],
                rows[-1]["seconds"],
            )
        return rows
