"""Uncertainty for per-sample metrics: percentile bootstrap CIs and paired run comparisons.

Everything is seeded and vectorised. Resamples are drawn in chunks as uniform floats
(``rng.random``), one float per index, so results do not depend on the chunk size and equal
those of a plain loop that draws ``rng.random(n)`` per resample with the same seed.

Example::

    mean, lo, hi = bootstrap_ci(hit_rate(ranks, 10), n_boot=1000, seed=0)
    cmp = paired_comparison(ndcg_a, ndcg_b, ids_a=ids_a, ids_b=ids_b)
    cmp["diff"], cmp["p_value"]
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import NamedTuple, TypedDict

import numpy as np

from recbias.errors import RecbiasError
from recbias.metrics.ranking import (
    DEFAULT_KS,
    check_ks,
    per_sample_metrics,
    valid_ratio,
    warn_if_truncated,
)
from recbias.recs import align_sample_ids

# Elements per random chunk (8 MB of float64): bounds memory, not results.
_CHUNK_ELEMS = 1 << 20


class BootstrapCI(NamedTuple):
    """Point estimate (mean over all samples) and percentile bootstrap interval."""

    mean: float
    lo: float
    hi: float


class PairedComparison(TypedDict):
    """Run a vs run b on the same samples; ``diff = mean_a − mean_b``."""

    n: int
    mean_a: float
    mean_b: float
    diff: float
    lo: float
    hi: float
    p_value: float
    a_better: int
    b_better: int
    ties: int


def _chunks(total: int, n: int) -> Iterator[int]:
    """Sizes of consecutive row chunks of an [total, n] random matrix."""
    rows = max(1, _CHUNK_ELEMS // max(n, 1))
    for start in range(0, total, rows):
        yield min(rows, total - start)


def _bootstrap_means(values: np.ndarray, n_boot: int, seed: int) -> np.ndarray:
    """Means of ``n_boot`` resamples of the rows of values [n, m] → [n_boot, m].

    All columns share the same resamples. Each chunk turns its index matrix into per-row
    counts and takes one matrix product, instead of gathering [chunk, n, m] values.
    """
    n = values.shape[0]
    rng = np.random.default_rng(seed)
    out = []
    for rows in _chunks(n_boot, n):
        idx = (rng.random((rows, n)) * n).astype(np.int64)
        flat = (idx + n * np.arange(rows)[:, None]).ravel()
        counts = np.bincount(flat, minlength=rows * n).reshape(rows, n)
        out.append(counts @ values / n)
    return np.concatenate(out) if out else np.empty((0, values.shape[1]))


def _check_bootstrap_args(n: int, n_boot: int, alpha: float) -> None:
    if n == 0:
        raise ValueError("cannot bootstrap an empty array of per-sample values")
    if n_boot < 1 or not 0.0 < alpha < 1.0:
        raise ValueError(f"need n_boot ≥ 1 and 0 < alpha < 1, got {n_boot} and {alpha}")


def _interval(means: np.ndarray, alpha: float) -> tuple[np.ndarray, np.ndarray]:
    lo, hi = np.quantile(means, [alpha / 2, 1 - alpha / 2], axis=0)
    return lo, hi


def bootstrap_ci(
    per_sample: np.ndarray, n_boot: int = 1000, alpha: float = 0.05, seed: int = 0
) -> BootstrapCI:
    """Mean of per_sample [n] and its (1 − alpha) percentile bootstrap interval over samples."""
    values = np.asarray(per_sample, dtype=np.float64)
    if values.ndim != 1:
        raise ValueError(f"per_sample must be 1-D, got shape {values.shape}")
    _check_bootstrap_args(len(values), n_boot, alpha)
    lo, hi = _interval(_bootstrap_means(values[:, None], n_boot, seed), alpha)
    return BootstrapCI(float(values.mean()), float(lo[0]), float(hi[0]))


def metrics_with_ci(
    items: np.ndarray,
    targets: np.ndarray,
    ks: Sequence[int] = DEFAULT_KS,
    n_boot: int = 1000,
    seed: int = 0,
    alpha: float = 0.05,
) -> dict[str, float | dict[str, float]]:
    """HR@k and NDCG@k as ``{"mean", "lo", "hi"}`` dicts, plus ``valid_ratio``, ``list_length``, ``n``.

    All metrics share the same resamples, so ``bootstrap_ci`` of one metric's per-sample array
    with the same seed gives the same interval.
    """
    items = np.asarray(items)
    per_sample = per_sample_metrics(items, targets, ks)
    warn_if_truncated(check_ks(ks), items.shape[1])
    values = np.stack(list(per_sample.values()), axis=1)
    _check_bootstrap_args(len(values), n_boot, alpha)
    lo, hi = _interval(_bootstrap_means(values, n_boot, seed), alpha)
    out: dict[str, float | dict[str, float]] = {
        name: {"mean": float(values[:, j].mean()), "lo": float(lo[j]), "hi": float(hi[j])}
        for j, name in enumerate(per_sample)
    }
    out["valid_ratio"] = valid_ratio(items)
    out["list_length"] = int(items.shape[1])
    out["n"] = int(items.shape[0])
    return out


def sign_flip_p_value(diff: np.ndarray, n_perm: int = 10_000, seed: int = 0) -> float:
    """Two-sided paired sign-flip (permutation) test of mean(diff) = 0.

    p = (1 + #{|mean(s·diff)| ≥ |mean(diff)|}) / (1 + n_perm) for random signs s; identical runs
    give p = 1.
    """
    diff = np.asarray(diff, dtype=np.float64)
    n = len(diff)
    observed = abs(diff.mean())
    tol = 1e-12 * max(1.0, float(np.abs(diff).max(initial=0.0)))
    rng = np.random.default_rng(seed)
    extreme = 0
    total = diff.sum()
    for rows in _chunks(n_perm, n):
        flipped = rng.random((rows, n)) < 0.5
        means = (total - 2.0 * (flipped @ diff)) / n  # mean of s·diff with s = −1 where flipped
        extreme += int((np.abs(means) >= observed - tol).sum())
    return (1 + extreme) / (1 + n_perm)


def paired_comparison(
    a: np.ndarray,
    b: np.ndarray,
    n_boot: int = 1000,
    seed: int = 0,
    *,
    ids_a: np.ndarray | None = None,
    ids_b: np.ndarray | None = None,
    n_perm: int = 10_000,
    alpha: float = 0.05,
) -> PairedComparison:
    """Compare two runs' per-sample metrics [n] on the same samples.

    With ``ids_a``/``ids_b`` the arrays are aligned by sample id first (an error names how many ids
    each run lacks); without them they must already be aligned. Returns the mean difference
    a − b, its bootstrap CI, a sign-flip p-value and how many samples favour each run.
    """
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if (ids_a is None) != (ids_b is None):
        raise ValueError("pass both ids_a and ids_b, or neither")
    if ids_a is not None and ids_b is not None:
        if len(ids_a) != len(a) or len(ids_b) != len(b):
            raise ValueError("each ids array must have one id per metric value")
        b = b[align_sample_ids(ids_a, ids_b)]
    if a.shape != b.shape or a.ndim != 1:
        raise RecbiasError(f"paired runs must cover the same samples, got {a.shape} and {b.shape}")
    diff = a - b
    ci = bootstrap_ci(diff, n_boot=n_boot, alpha=alpha, seed=seed)
    return PairedComparison(
        n=len(diff),
        mean_a=float(a.mean()),
        mean_b=float(b.mean()),
        diff=ci.mean,
        lo=ci.lo,
        hi=ci.hi,
        p_value=sign_flip_p_value(diff, n_perm=n_perm, seed=seed),
        a_better=int((diff > 0).sum()),
        b_better=int((diff < 0).sum()),
        ties=int((diff == 0).sum()),
    )
