"""Synthetic-data channel (Prop. 4.6): retraining on the model's own output concentrates it.

One context state, a catalogue of V items and an organic distribution p*. Round 0's model is
fitted on N organic choices; in every later round the logs hold n = N - m organic choices from p*
and m = round(lambda N) delegated choices from the deployed model p_t, and the next model is the
cross-entropy fit of a free softmax, i.e. the empirical histogram (Lemma 9.2). The squared index
S_t = sum_i p_t(i)^2 is tracked. Its expectation follows exactly (Appendix 9.3, E[p_t] = p*):

    E S_{t+1} = (N + (n^2 - n + 2 n m) S* + (m^2 - m) E S_t) / N^2,   E S_0 = S* + (1 - S*) / N

so it is flat for lambda = 0 and increases monotonically to its fixed point for lambda > 0.

    p = zipf_distribution(50, 1.0)
    hhi = simulate(p, logs=200, lam=0.5, rounds=30, seeds=200, rng=np.random.default_rng(0))
    exact = expected_hhi(p, logs=200, lam=0.5, rounds=30)                 # [31]
"""

from __future__ import annotations

import numpy as np

from recbias.errors import ConfigError


def zipf_distribution(n_items: int, exponent: float) -> np.ndarray:
    """p*(i) proportional to (i + 1)^-exponent. → [n_items]."""
    w = np.arange(1, n_items + 1, dtype=np.float64) ** -exponent
    return w / w.sum()


def split_logs(logs: int, lam: float) -> tuple[int, int]:
    """(organic n, delegated m) with m = round(lam * logs)."""
    if not 0.0 <= lam <= 1.0:
        raise ConfigError(
            f"config key 'synthetic.lambdas': every value must be in [0, 1], got {lam}"
        )
    m = round(lam * logs)
    return logs - m, m


def _check_rounds(rounds: int) -> None:
    if rounds < 1:
        raise ConfigError(f"config key 'synthetic.rounds': must be >= 1, got {rounds}")


def simulate(
    p_true: np.ndarray, logs: int, lam: float, rounds: int, seeds: int, rng: np.random.Generator
) -> np.ndarray:
    """Squared index of the fitted model over rounds for ``seeds`` independent loops. → [seeds, rounds + 1]."""
    _check_rounds(rounds)
    n, m = split_logs(logs, lam)
    p = rng.multinomial(logs, p_true, size=seeds) / logs  # round 0: organic only, [seeds, V]
    out = [np.square(p).sum(1)]
    for _ in range(rounds):
        organic = rng.multinomial(n, p_true, size=seeds)
        delegated = np.stack([rng.multinomial(m, row) for row in p])
        p = (organic + delegated) / logs
        out.append(np.square(p).sum(1))
    return np.stack(out, axis=1)


def expected_hhi(p_true: np.ndarray, logs: int, lam: float, rounds: int) -> np.ndarray:
    """Exact E[S_t] for t = 0..rounds from the recursion in the module docstring. → [rounds + 1]."""
    _check_rounds(rounds)
    n, m = split_logs(logs, lam)
    s_star = float(np.square(p_true).sum())
    big = float(logs) ** 2
    out = [s_star + (1.0 - s_star) / logs]
    for _ in range(rounds):
        out.append((logs + (n * n - n + 2 * n * m) * s_star + (m * m - m) * out[-1]) / big)
    return np.asarray(out)


def fixed_point(p_true: np.ndarray, logs: int, lam: float) -> float:
    """lim E[S_t]: the fixed point of the recursion (1.0 when lambda = 1: collapse)."""
    n, m = split_logs(logs, lam)
    s_star = float(np.square(p_true).sum())
    denom = logs**2 - m * m + m
    return float((logs + (n * n - n + 2 * n * m) * s_star) / denom)
