"""Benchmark of the closed-loop simulator: time and peak memory against the 10-minute budget.

    python bench/bench_simulator.py                                   # 100k × 10k × 50, popularity
    python bench/bench_simulator.py --users 5000 --items 1000 --rounds 3 --scorer mf   # smoke

Target (issue 5 §3): 100,000 users × 10,000 items × 50 rounds in ≤ 10 minutes, ≤ 8 GB, on the
2-core machine. Prints elapsed time, peak RSS, the ratio to the budget (measured for the full
size, projected linearly in users × items × rounds otherwise) and the speed-up over a named
baseline measured in the same run: ``naive-numpy-round``, one round done the straightforward way
(full score matrix in numpy, ``np.argsort`` of every row, a Python loop over users for the
choices and delegation) on a subsample of users, per user.
"""

from __future__ import annotations

import argparse
import resource
import time

import numpy as np

from recbias.config import from_dict
from recbias.simulate import Simulation, SimulationConfig, build_world

BUDGET_S = 600.0


def naive_round(world, scores: np.ndarray, k: int, lam: float, rng: np.random.Generator) -> list:
    """Baseline: one round without chunking/vectorisation. scores: [n_sub, n_items]."""
    picks = []
    util = world.user_factors[: len(scores)].numpy() @ world.item_factors.numpy().T
    for u in range(len(scores)):
        slate = np.argsort(-scores[u])[:k]
        if rng.random() < lam:
            picks.append(int(slate[0]))
        else:
            p = np.exp(util[u] - util[u].max())
            picks.append(int(rng.choice(len(p), p=p / p.sum())))
    return picks


def time_naive(world, sim: Simulation, n_sub: int, k: int) -> float:
    """Seconds per user of the naive baseline round on the first ``n_sub`` users."""
    users = np.arange(min(n_sub, world.n_users))
    start = time.perf_counter()
    scores = np.broadcast_to(sim.scorer.scores(users).numpy(), (len(users), world.n_items))
    naive_round(world, np.array(scores), k, 0.5, np.random.default_rng(0))
    return (time.perf_counter() - start) / len(users)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--users", type=int, default=100_000)
    ap.add_argument("--items", type=int, default=10_000)
    ap.add_argument("--rounds", type=int, default=50)
    ap.add_argument("--scorer", choices=["popularity", "mf"], default="popularity")
    ap.add_argument("--lam", type=float, default=0.5)
    ap.add_argument("--naive-users", type=int, default=500)
    args = ap.parse_args()
    cfg = from_dict(
        SimulationConfig,
        {
            "world": {"n_users": args.users, "n_items": args.items},
            "scorer": {"name": args.scorer},
            "loop": {"rounds": args.rounds, "lambdas": [args.lam]},
        },
    )
    start = time.perf_counter()
    world = build_world(cfg)
    sim = Simulation(world, cfg, args.lam, cfg.mitigation)
    rows = sim.run()
    elapsed = time.perf_counter() - start
    per_user_round = sum(r["seconds"] for r in rows) / (args.users * args.rounds)
    naive = time_naive(world, sim, args.naive_users, cfg.loop.k)
    peak_gb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    loop_s = sum(r["seconds"] for r in rows)
    setup_s = elapsed - loop_s
    cells = 100_000 * 10_000 / (args.users * args.items)
    # setup (world + organic draws) scales with users × items; every round with users × items
    # (the accumulated logs only enter the cheap sparse ALS products).
    projected = setup_s * cells + loop_s * cells * 50 / args.rounds
    print(f"size: {args.users} users x {args.items} items x {args.rounds} rounds, {args.scorer}")
    print(f"elapsed: {elapsed:.1f} s  (setup {setup_s:.1f} s, rounds {loop_s:.1f} s)")
    print(f"peak RSS: {peak_gb:.2f} GB")
    print(f"projected 100k x 10k x 50: {projected:.0f} s")
    print(f"ratio to the 10-minute budget: {projected / BUDGET_S:.2f}")
    print(f"speed-up vs naive-numpy-round: {naive / per_user_round:.1f}x per user-round")
    print(f"final exposure HHI: {rows[-1]['exposure_hhi']:.4f}")


if __name__ == "__main__":
    main()
