"""Synthetic-data channel (Prop. 4.6): the squared index over retraining rounds."""

from __future__ import annotations

import numpy as np
import pytest

from recbias.config import from_dict
from recbias.errors import ConfigError
from recbias.probes import synthetic
from recbias.probes.config import SyntheticProbeConfig

P = synthetic.zipf_distribution(20, 1.0)
LOGS, ROUNDS = 50, 12


def test_exact_expectation_flat_without_delegation():
    s_star = float(np.square(P).sum())
    exact = synthetic.expected_hhi(P, LOGS, 0.0, ROUNDS)
    np.testing.assert_allclose(exact, s_star + (1 - s_star) / LOGS)


def test_exact_expectation_rises_and_faster_for_larger_lambda():
    curves = [synthetic.expected_hhi(P, LOGS, lam, ROUNDS) for lam in (0.2, 0.5, 0.9)]
    for curve in curves:
        assert curve[1] > curve[0]
        assert np.all(np.diff(curve) >= 0)  # monotone up to the fixed point
    gains = [c[-1] - c[0] for c in curves]
    assert gains[0] < gains[1] < gains[2]
    assert synthetic.fixed_point(P, LOGS, 1.0) == pytest.approx(1.0)  # pure delegation collapses


def test_one_round_expectation_by_brute_force():
    """Two items, N = 3, lambda = 1/3: enumerate every outcome of one retraining round."""
    from itertools import product
    from math import comb

    p = np.array([0.7, 0.3])
    n_org, n_syn = synthetic.split_logs(3, 1 / 3)
    s0 = synthetic.expected_hhi(p, 3, 1 / 3, 1)
    total = 0.0
    for k0 in range(4):  # round 0: k0 of 3 organic draws are item 0
        w0 = comb(3, k0) * 0.7**k0 * 0.3 ** (3 - k0)
        q = k0 / 3
        for a, b in product(range(n_org + 1), range(n_syn + 1)):
            w = (
                comb(n_org, a)
                * 0.7**a
                * 0.3 ** (n_org - a)
                * comb(n_syn, b)
                * q**b
                * (1 - q) ** (n_syn - b)
            )
            x = (a + b) / 3
            total += w0 * w * (x**2 + (1 - x) ** 2)
    assert s0[1] == pytest.approx(total)


@pytest.mark.parametrize("lam", [0.0, 0.5, 0.9])
def test_monte_carlo_matches_the_exact_expectation(lam):
    mc = synthetic.simulate(P, LOGS, lam, ROUNDS, 2000, np.random.default_rng(0))
    exact = synthetic.expected_hhi(P, LOGS, lam, ROUNDS)
    se = mc.std(0, ddof=1) / np.sqrt(mc.shape[0])
    assert np.all(np.abs(mc.mean(0) - exact) < 4.5 * se)
    rise = mc[:, -1] - mc[:, 0]
    z = rise.mean() / (rise.std(ddof=1) / np.sqrt(len(rise)))
    assert (z > 5) if lam > 0 else (abs(z) < 3)


def test_simulation_is_seeded():
    a = synthetic.simulate(P, LOGS, 0.5, 3, 4, np.random.default_rng(7))
    b = synthetic.simulate(P, LOGS, 0.5, 3, 4, np.random.default_rng(7))
    np.testing.assert_array_equal(a, b)


def test_bad_lambda_and_rounds_are_rejected():
    with pytest.raises(ConfigError, match=r"synthetic\.lambdas"):
        synthetic.split_logs(10, 1.5)
    with pytest.raises(ConfigError, match=r"synthetic\.rounds"):
        synthetic.expected_hhi(P, LOGS, 0.5, 0)
    with pytest.raises(ConfigError, match=r"synthetic\.lambdas\[1\].*\[0, 1\].*-0\.1"):
        from_dict(SyntheticProbeConfig, {"synthetic": {"lambdas": [0.5, -0.1]}})
    with pytest.raises(ConfigError, match=r"synthetic\.rounds.*got 0"):
        from_dict(SyntheticProbeConfig, {"synthetic": {"rounds": 0}})
    with pytest.raises(ConfigError, match=r"synthetic\.lambdas.*non-empty"):
        from_dict(SyntheticProbeConfig, {"synthetic": {"lambdas": []}})
