import numpy as np
import pytest

from recbias.errors import RecbiasError
from recbias.metrics import stats
from recbias.metrics.ranking import hit_rate, ndcg, target_ranks
from recbias.metrics.stats import (
    align_sample_ids,
    bootstrap_ci,
    metrics_with_ci,
    paired_comparison,
    sign_flip_p_value,
)


def _loop_bootstrap(values, n_boot, alpha, seed):
    """Reference: one resample per iteration, indices drawn as floor(u·n)."""
    rng = np.random.default_rng(seed)
    n = len(values)
    means = [values[(rng.random(n) * n).astype(np.int64)].mean() for _ in range(n_boot)]
    return np.quantile(means, [alpha / 2, 1 - alpha / 2])


def _loop_sign_flip(diff, n_perm, seed):
    rng = np.random.default_rng(seed)
    observed = abs(diff.mean())
    hits = 0
    for _ in range(n_perm):
        signs = np.where(rng.random(len(diff)) < 0.5, -1.0, 1.0)
        hits += abs((signs * diff).mean()) >= observed - 1e-12
    return (1 + hits) / (1 + n_perm)


@pytest.fixture
def binary():
    return (np.random.default_rng(3).random(300) < 0.3).astype(float)


def test_ci_contains_the_mean(binary):
    mean, lo, hi = bootstrap_ci(binary, n_boot=500)
    assert lo < mean < hi
    assert mean == binary.mean()


def test_ci_of_constant_is_degenerate():
    assert tuple(bootstrap_ci(np.full(50, 0.25), n_boot=200)) == (0.25, 0.25, 0.25)


def test_bootstrap_is_deterministic_under_seed():
    values = np.random.default_rng(0).normal(size=200)
    assert bootstrap_ci(values, seed=7) == bootstrap_ci(values, seed=7)
    assert bootstrap_ci(values, seed=7) != bootstrap_ci(values, seed=8)


def test_bootstrap_matches_plain_loop(binary):
    _, lo, hi = bootstrap_ci(binary, n_boot=300, alpha=0.1, seed=5)
    assert [lo, hi] == pytest.approx(_loop_bootstrap(binary, 300, 0.1, 5), abs=1e-12)


def test_bootstrap_does_not_depend_on_chunk_size(binary, monkeypatch):
    whole = bootstrap_ci(binary, n_boot=100, seed=2)
    monkeypatch.setattr(stats, "_CHUNK_ELEMS", 7 * len(binary))  # 7 resamples per chunk
    assert bootstrap_ci(binary, n_boot=100, seed=2) == pytest.approx(whole, abs=1e-12)


def test_ci_narrows_with_more_samples():
    rng = np.random.default_rng(0)
    small = bootstrap_ci((rng.random(100) < 0.5).astype(float), n_boot=300)
    large = bootstrap_ci((rng.random(10_000) < 0.5).astype(float), n_boot=300)
    assert large.hi - large.lo < (small.hi - small.lo) / 3


def test_p_value_is_one_for_identical_runs(binary):
    result = paired_comparison(binary, binary.copy(), n_boot=100, n_perm=500)
    assert result["p_value"] == 1.0
    assert result["diff"] == result["lo"] == result["hi"] == 0.0
    assert result["ties"] == len(binary)


def test_p_value_is_small_for_clearly_better_run(binary):
    better = np.maximum(binary, (np.random.default_rng(9).random(300) < 0.3).astype(float))
    result = paired_comparison(better, binary, n_boot=200, n_perm=2000)
    assert result["p_value"] < 0.01
    assert result["lo"] > 0
    assert result["b_better"] == 0
    assert result["a_better"] + result["ties"] == 300


def test_sign_flip_matches_plain_loop():
    diff = np.random.default_rng(4).normal(0.05, 1.0, 80)
    assert sign_flip_p_value(diff, n_perm=400, seed=3) == _loop_sign_flip(diff, 400, 3)


def test_paired_comparison_aligns_by_sample_id():
    a, ids_a = np.array([1.0, 0.0, 1.0]), np.array([10, 11, 12])
    b, ids_b = np.array([1.0, 1.0, 0.0]), np.array([12, 10, 11])  # b aligned: [1, 0, 1]
    result = paired_comparison(a, b, ids_a=ids_a, ids_b=ids_b, n_boot=50, n_perm=50)
    assert result["diff"] == 0.0
    assert result["ties"] == 3


def test_paired_comparison_names_missing_ids():
    with pytest.raises(RecbiasError, match="run b lacks 2 ids of run a and run a lacks 1"):
        paired_comparison(
            np.zeros(3), np.zeros(2), ids_a=np.array([1, 2, 3]), ids_b=np.array([3, 4])
        )


def test_align_sample_ids_rejects_duplicates():
    with pytest.raises(RecbiasError, match="unique"):
        align_sample_ids(np.array([1, 2]), np.array([1, 1]))


def test_metrics_with_ci_shares_resamples_with_bootstrap_ci():
    rng = np.random.default_rng(2)
    items = np.array([rng.permutation(20)[:5] for _ in range(150)])
    targets = rng.integers(0, 20, 150)
    out = metrics_with_ci(items, targets, ks=(1, 5), n_boot=200, seed=4)
    ranks = target_ranks(items, targets)
    assert tuple(out["HR@5"].values()) == pytest.approx(
        bootstrap_ci(hit_rate(ranks, 5), 200, seed=4)
    )
    assert tuple(out["NDCG@5"].values()) == pytest.approx(bootstrap_ci(ndcg(ranks, 5), 200, seed=4))
    assert out["n"] == 150
    assert out["valid_ratio"] == 1.0
