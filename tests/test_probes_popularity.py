"""Popularity channel (Prop. 4.4): early-SGD amplification and exposure-vs-count exponents."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from recbias.baselines.sasrec import SASRecConfig, SASRecRecommender
from recbias.errors import ConfigError
from recbias.probes import popularity as pop
from recbias.probes import sgd
from recbias.probes.models import PopularityScorer


def _run(**kw):
    args = dict(
        counts=[32, 16, 8, 4, 2, 1],
        steps=40,
        lr=0.05,
        dim=8,
        query_noise=0.3,
        seeds=100,
        checkpoints=4,
        seed=0,
    )
    args.update(kw)
    return sgd.early_sgd(**args)


def test_exposure_ratio_exceeds_count_ratio_after_early_sgd_steps():
    res = _run()
    assert res["exponent"][0] == pytest.approx(1.0)  # symmetric init: exposure = count ratio
    assert all(e > 1.0 for e in res["exponent"][1:])
    assert np.all(np.diff(res["exponent"]) > 0)
    assert res["frac_pairs_exposure_gt_count"][1:] == [1.0] * 4  # every (frequent, rare) pair


def test_balanced_training_data_gives_no_amplification():
    with pytest.raises(ConfigError, match=r"popularity\.sgd\.counts"):
        _run(counts=[5, 5, 5, 5], seeds=10)  # no pair with c_u > c_v: nothing to measure
    rng = np.random.default_rng(0)
    mu = sgd.orthonormal_means(rng, 4, 8)
    c = np.full(4, 5.0)
    keys = sgd.sgd_run(c, mu, 30, 0.05, 0.0, rng, np.array([30]))[0]
    pairs = np.array([[0, 1], [2, 3]])
    drift = sgd.predicted_log_amplification(c, mu, pairs, 0.05)
    np.testing.assert_allclose(drift, 0.0, atol=1e-12)
    assert np.abs(sgd.pair_log_amplification(keys, mu, pairs)).max() < 0.2


def test_first_order_prediction_matches_the_first_steps():
    res = _run(lr=0.01, steps=20, checkpoints=1, seeds=400)
    measured, predicted = res["mean_log_amplification"][1], res["predicted_log_amplification"][1]
    assert predicted > 0
    assert measured == pytest.approx(predicted, rel=0.15)


def test_fit_exponent_recovers_power_laws():
    counts = np.array([1, 2, 4, 8, 16, 32, 0])
    for beta in (1.0, 2.0):
        fit = pop.fit_exponent(counts, counts.astype(float) ** beta * 1e-3, n_boot=50, seed=0)
        assert fit["exponent"] == pytest.approx(beta)
        assert fit["lo"] == pytest.approx(beta) and fit["hi"] == pytest.approx(beta)
        assert fit["n_units"] == 6  # the zero count is left out


def test_within_user_exponent_removes_the_per_sample_scale():
    histories = [[0, 0, 0, 1], [2, 2, 3, 3, 3, 3], [4, 5]]  # last: no repeat, no information
    counts = np.zeros((3, 6))
    for row, hist in enumerate(histories):
        np.add.at(counts[row], hist, 1)
    scale = np.array([[0.5], [3.0], [1.0]])
    exposure = scale * np.where(counts > 0, counts, 0.1) ** 1.7
    fit = pop.within_user_exponent(histories, exposure, None, n_boot=50, seed=0)
    assert fit["exponent"] == pytest.approx(1.7)
    assert fit["n_informative_samples"] == 2
    none = pop.within_user_exponent([[0, 1], [2]], exposure[:2], None, n_boot=10, seed=0)
    assert none["exponent"] is None


def test_token_exposure_and_counts_hand_case():
    codes = np.array([[0, 1], [0, 0], [1, 1]])  # 3 items, 2 levels, vocab 2 -> tokens 0..3
    exposure = np.array([[0.5, 0.3, 0.2]])
    np.testing.assert_allclose(pop.token_exposure(exposure, codes), [[0.8, 0.2, 0.3, 0.7]])
    np.testing.assert_allclose(pop.token_counts(np.array([2, 1, 0]), codes), [3, 0, 1, 2])


def test_topk_exposure_hand_case():
    logp = np.log(np.array([[0.1, 0.6, 0.3], [0.5, 0.2, 0.3]]))
    np.testing.assert_allclose(pop.item_exposure(logp, "topk", 2), [[0, 0.5, 0.5], [0.5, 0, 0.5]])
    np.testing.assert_allclose(pop.item_exposure(logp, "softmax", 2), np.exp(logp))


class BeamOnly:
    def recommend(self, samples, k):
        raise AssertionError("not reached")


def _samples(n_items: int, n: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {
            "sample_id": np.arange(n),
            "user": [f"u{i % 7}" for i in range(n)],
            "history": [rng.integers(0, n_items, 4).tolist() for _ in range(n)],
            "target": rng.zipf(1.5, n) % n_items,
        }
    )


def test_scorer_without_exact_scores_is_rejected_naming_the_setting():
    with pytest.raises(ConfigError, match=r"model\.kind.*exact scoring.*BeamOnly"):
        pop.exact_log_probs(BeamOnly(), _samples(5, 3, 0))


def test_item_id_scorers_qualify_and_are_normalised():
    train, test = _samples(12, 64, 0), _samples(12, 10, 1)
    scorers = [
        PopularityScorer().fit(train, 12),
        SASRecRecommender(SASRecConfig(hidden=8, layers=1, heads=1, epochs=1, max_len=4)).fit(
            train, 12
        ),
    ]
    for model in scorers:
        logp = pop.exact_log_probs(model, test)
        assert logp.shape == (10, 12)
        np.testing.assert_allclose(np.exp(logp).sum(1), 1.0, rtol=1e-9)
    counts = np.bincount(train["target"], minlength=12)
    exposure = np.exp(pop.exact_log_probs(scorers[0], test)).mean(0)
    np.testing.assert_allclose(exposure, (counts + 1) / (counts + 1).sum())


def test_item_codes_reads_item_codes_or_genrec_codes():
    from types import SimpleNamespace

    from recbias.probes.models import item_codes

    codes = np.array([[0, 1], [2, 0], [1, 1]])
    assert item_codes(SimpleNamespace(n_items=3, codes=codes)).tolist() == codes.tolist()
    assert item_codes(SimpleNamespace(item_codes=codes)).tolist() == codes.tolist()
    assert item_codes(SimpleNamespace(n_items=3, codes=np.zeros((0, 2)))) is None
    assert item_codes(PopularityScorer()) is None
