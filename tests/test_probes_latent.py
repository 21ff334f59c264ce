"""Latent-driver channel (Prop. 4.5): log odds of two keys ~ N(Delta, 2 sigma^2)."""

from __future__ import annotations

import numpy as np
import pytest

from recbias.config import from_dict
from recbias.errors import ConfigError
from recbias.probes import latent
from recbias.probes.config import LatentProbeConfig

N = 20000


@pytest.mark.parametrize("sigma", [0.3, 1.0, 2.5])
def test_log_odds_variance_is_two_sigma_squared(sigma):
    means = np.array([0.4, -0.1, 1.0, 0.0, -2.0])  # Delta = 0.5; other keys must not matter
    draws = latent.head_log_odds(means, sigma, N, np.random.default_rng(0))
    check = latent.lognormal_check(draws, delta=0.5, sigma=sigma, kappa=3.0)
    # sd of a sample variance of N normals is var * sqrt(2 / (N - 1)) ≈ 1%: allow 5 sd
    assert check["var_ratio"] == pytest.approx(1.0, abs=0.05)
    assert check["mean"] == pytest.approx(0.5, abs=5 * np.sqrt(2) * sigma / np.sqrt(N))
    assert check["ks_p"] > 1e-3
    assert check["p_odds_ge_kappa"] == pytest.approx(check["expected_p_odds_ge_kappa"], abs=0.015)


def test_wrong_variance_is_detected():
    draws = latent.head_log_odds(np.zeros(4), 1.0, N, np.random.default_rng(1))
    wrong = latent.lognormal_check(draws, delta=0.0, sigma=np.sqrt(0.5), kappa=3.0)  # claims var 1
    assert wrong["var_ratio"] == pytest.approx(2.0, rel=0.05)
    assert wrong["ks_p"] < 1e-6


def test_mean_odds_and_tail_grow_with_sigma():
    rows = [
        latent.lognormal_check(
            latent.head_log_odds(np.zeros(3), s, N, np.random.default_rng(2)), 0.0, s, 3.0
        )
        for s in (0.25, 0.5, 1.0)
    ]
    for row in rows:
        assert row["mean_odds"] == pytest.approx(row["expected_mean_odds"], rel=0.05)
    tails = [r["p_odds_ge_kappa"] for r in rows]
    assert tails[0] < tails[1] < tails[2]


def test_head_topk_stability_falls_with_noise():
    means = -0.5 * np.arange(10)
    rng = np.random.default_rng(0)
    jac = [latent.head_topk_stability(means, s, 100, 5, rng) for s in (0.0, 0.3, 1.0, 3.0)]
    assert jac[0] == 1.0
    assert jac[0] > jac[1] > jac[2] > jac[3]


def test_mean_pairwise_jaccard_averages_over_pairs_of_draws():
    a = np.array([[1, 2, 3], [4, -1, -1]])
    b = np.array([[3, 2, 9], [4, -1, -1]])  # row Jaccards vs a: 0.5, 1.0
    c = np.array([[7, 8, 9], [5, -1, -1]])  # vs a: 0, 0; vs b: 0.2, 0
    assert latent.mean_pairwise_jaccard([a]) == 1.0
    assert latent.mean_pairwise_jaccard([a, b, c]) == pytest.approx((0.75 + 0.0 + 0.1) / 3)


def test_pairwise_log_odds_skips_padding():
    attn = np.array([[0.0, 0.25, 0.75]])
    out = latent.pairwise_log_odds(attn)  # pairs (0,1), (0,2), (1,2)
    assert np.isnan(out[0, 0]) and np.isnan(out[0, 1])
    assert out[0, 2] == pytest.approx(np.log(1 / 3))


@pytest.mark.parametrize(
    ("data", "key"),
    [
        ({"latent": {"sigmas": []}}, "latent.sigmas"),
        ({"latent": {"sigmas": [0.5, -0.1]}}, "latent.sigmas"),
        ({"latent": {"history_len": 1}}, "latent.history_len"),
        ({"model": {"kind": "popularity"}}, "model.kind"),
    ],
)
def test_bad_config_names_the_key(data, key):
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        from_dict(LatentProbeConfig, data)
