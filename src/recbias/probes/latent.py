"""Latent-driver channel (Prop. 4.5): Gaussian logit noise gives log-normal attention odds.

Under Assumption 4.3 (independent logits s_i ~ N(m_i, sigma^2)), the odds ratio a_i / a_j =
exp(s_i - s_j) of two history positions is log-normal with log-mean Delta = m_i - m_j and
log-variance 2 sigma^2 (Appendix 8); hence E[a_i/a_j] = exp(Delta + sigma^2) and
P(a_i/a_j >= kappa) = 1 - Phi((log kappa - Delta) / (sqrt(2) sigma)), increasing in sigma when
log kappa > Delta. :func:`lognormal_check` tests these on an isolated head through the softmax;
:func:`model_curve` measures a trained model (``set_attention_noise``) per sigma: the spread of
pairwise log odds ratios of history items and the stability (Jaccard) of its top-K lists.

    draws = head_log_odds(np.zeros(10), sigma=1.0, draws=20000, rng=rng)   # [draws]
    lognormal_check(draws, delta=0.0, sigma=1.0, kappa=3.0)["var_ratio"]    # ≈ 1
"""

from __future__ import annotations

import itertools
import logging
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from recbias.metrics.overlap import jaccard
from recbias.probes.heads import softmax

logger = logging.getLogger(__name__)


def head_log_odds(
    mean_logits: np.ndarray, sigma: float, draws: int, rng: np.random.Generator
) -> np.ndarray:
    """log(a_0 / a_1) of a softmax head with logits mean_logits + N(0, sigma^2). → [draws]."""
    noise = rng.standard_normal((draws, len(mean_logits))) * sigma
    a = softmax(mean_logits[None, :] + noise)
    return np.log(a[:, 0]) - np.log(a[:, 1])


def lognormal_check(
    log_odds: np.ndarray, delta: float, sigma: float, kappa: float
) -> dict[str, Any]:
    """Compare log-odds draws with N(delta, 2 sigma^2): moments, KS test, tail probability."""
    var = 2.0 * sigma**2
    out: dict[str, Any] = {
        "sigma": sigma,
        "mean": float(log_odds.mean()),
        "expected_mean": delta,
        "var": float(log_odds.var(ddof=1)),
        "expected_var": var,
        "mean_odds": float(np.exp(log_odds).mean()),
        "expected_mean_odds": float(np.exp(delta + sigma**2)),
        "p_odds_ge_kappa": float((log_odds >= np.log(kappa)).mean()),
    }
    if sigma == 0:
        out.update(
            var_ratio=None,
            ks_stat=None,
            ks_p=None,
            expected_p_odds_ge_kappa=float(delta >= np.log(kappa)),
        )
        return out
    z = (log_odds - delta) / np.sqrt(var)
    ks = stats.kstest(z, "norm")
    out.update(
        var_ratio=out["var"] / var,
        ks_stat=float(ks.statistic),
        ks_p=float(ks.pvalue),
        expected_p_odds_ge_kappa=float(stats.norm.sf((np.log(kappa) - delta) / np.sqrt(var))),
    )
    return out


def mean_pairwise_jaccard(lists: list[np.ndarray]) -> float:
    """Mean Jaccard over all pairs of draws (each [n, k]); 1.0 with a single draw."""
    pairs = list(itertools.combinations(range(len(lists)), 2))
    if not pairs:
        return 1.0
    return float(np.mean([jaccard(lists[i], lists[j]).mean() for i, j in pairs]))


def head_topk_stability(
    mean_logits: np.ndarray, sigma: float, draws: int, k: int, rng: np.random.Generator
) -> float:
    """Mean pairwise Jaccard of the top-k attended positions of the isolated head across draws."""
    noise = rng.standard_normal((draws, len(mean_logits))) * sigma
    top = np.argsort(-(mean_logits[None, :] + noise), axis=1)[:, :k]
    return mean_pairwise_jaccard([t[None, :] for t in top])


def pairwise_log_odds(attn: np.ndarray) -> np.ndarray:
    """log(a_i / a_j) for every pair i < j of non-padding history items. attn: [n, L] → [n, P]."""
    i, j = np.triu_indices(attn.shape[1], k=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        out = np.log(attn[:, i]) - np.log(attn[:, j])
    return np.where((attn[:, i] > 0) & (attn[:, j] > 0), out, np.nan)


def _as_numpy(x: Any) -> np.ndarray:
    return x.detach().cpu().numpy() if hasattr(x, "detach") else np.asarray(x)


def _noisy_draw(
    model: Any, samples: pd.DataFrame, sigma: float, seed: int, k: int
) -> tuple[np.ndarray, np.ndarray]:
    model.set_attention_noise(sigma, seed)
    attn = _as_numpy(model.history_attention(samples)).astype(np.float64)
    return pairwise_log_odds(attn), np.asarray(model.recommend(samples, k).items)


def _sigma_row(
    sigma: float, odds: list[np.ndarray], items: list[np.ndarray], clean: tuple, kappa: float
) -> dict[str, float]:
    stacked = np.stack(odds)  # [draws, n, P]
    valid = np.abs(stacked[~np.isnan(stacked)])
    return {
        "sigma": float(sigma),
        "var_log_odds_shift": float(np.nanvar(stacked - clean[0][None])),
        "expected_var_if_independent": 2.0 * sigma**2,
        "median_abs_log_odds": float(np.median(valid)) if valid.size else float("nan"),
        "p_dominance_ge_kappa": float((valid >= np.log(kappa)).mean()) if valid.size else 0.0,
        "jaccard_between_draws": mean_pairwise_jaccard(items),
        "jaccard_vs_clean": float(np.mean([jaccard(it, clean[1]).mean() for it in items])),
    }


def model_curve(
    model: Any,
    samples: pd.DataFrame,
    sigmas: list[float],
    draws: int,
    k: int,
    seed: int,
    kappa: float,
) -> list[dict[str, float]]:
    """Per sigma: spread of pairwise log odds (shift vs the noise-free model), share of pairs
    where one item dominates the other by >= kappa, and top-k Jaccard across noise draws."""
    clean = _noisy_draw(model, samples, 0.0, seed, k)
    rows = []
    try:
        for sigma in sigmas:
            got = [_noisy_draw(model, samples, sigma, seed + 1 + r, k) for r in range(draws)]
            rows.append(_sigma_row(sigma, [g[0] for g in got], [g[1] for g in got], clean, kappa))
            logger.info("latent probe: %s", rows[-1])
    finally:
        model.set_attention_noise(0.0, seed)
    return rows
