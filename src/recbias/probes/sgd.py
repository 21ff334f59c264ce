"""Early-SGD popularity amplification on an isolated head (Lemma 7.1, Prop. 4.4).

Setting of §4.2: V distinct tokens occur c_u times in the history and share one trainable key
k_u per token (Eq. 14), so the token exposure is ``alpha_u(q) = c_u e^{q.k_u} / sum_v c_v
e^{q.k_v}`` (Eq. 15). Training pairs (q, y) are i.i.d.: y ~ pi with pi proportional to the counts
(frequency in the history reflects popularity), q = mu_y + noise, with orthonormal mu. SGD
minimises ``-log alpha_y(q)`` (the exposure surrogate, Eq. 16) from equal keys (Assumption
4.2(iii)). For a test query comparably aligned with two tokens, q_uv = (mu_u + mu_v) / 2, the
exposure ratio is ``alpha_u / alpha_v = (c_u / c_v) e^{q_uv.(k_u - k_v)}`` (Eq. 56); the log
amplification ``q_uv.(k_u - k_v)`` is compared with its first-order prediction
``lr t q_uv.(pi_u mu_u - pi_v mu_v - (rho_u - rho_v) mu_bar)`` (Lemma 7.1, rho = c / sum c).

    res = early_sgd(counts=[32, 16, 8, 4, 2, 1], steps=200, lr=0.05, dim=16, query_noise=0.3,
                    seeds=20, checkpoints=10, seed=0)
    res["exponent"][-1]      # > 1: exposure ratios grow faster than count ratios
"""

from __future__ import annotations

from typing import Any

import numpy as np

from recbias.errors import ConfigError
from recbias.probes.heads import softmax


def orthonormal_means(rng: np.random.Generator, n_tokens: int, dim: int) -> np.ndarray:
    """Random orthonormal query directions mu_u. → [V, dim] (needs dim >= V)."""
    q, _ = np.linalg.qr(rng.standard_normal((dim, n_tokens)))
    return q.T


def exposure(keys: np.ndarray, log_counts: np.ndarray, queries: np.ndarray) -> np.ndarray:
    """Token exposure alpha(q) of Eq. 15. keys: [V, d], log_counts: [V], queries: [..., d] → [..., V]."""
    return softmax(log_counts + queries @ keys.T)


def sgd_run(
    counts: np.ndarray,
    mu: np.ndarray,
    steps: int,
    lr: float,
    noise: float,
    rng: np.random.Generator,
    snapshot_at: np.ndarray,
) -> np.ndarray:
    """Plain SGD on -log alpha_y(q); returns the keys at each snapshot step. → [S, V, d]."""
    log_c = np.log(counts)
    pi = counts / counts.sum()
    keys = np.zeros_like(mu)  # symmetric initialisation
    labels = rng.choice(len(counts), size=steps, p=pi)
    jitter = rng.standard_normal((steps, mu.shape[1])) * noise / np.sqrt(mu.shape[1])
    out, wanted = [], set(int(s) for s in snapshot_at)
    if 0 in wanted:
        out.append(keys.copy())
    for t in range(steps):
        q = mu[labels[t]] + jitter[t]
        grad_logits = exposure(keys, log_c, q)  # d(-log alpha_y)/d(q.k_u) = alpha_u - 1[u = y]
        grad_logits[labels[t]] -= 1.0
        keys -= lr * np.outer(grad_logits, q)
        if t + 1 in wanted:
            out.append(keys.copy())
    return np.stack(out)


def pair_log_amplification(keys: np.ndarray, mu: np.ndarray, pairs: np.ndarray) -> np.ndarray:
    """q_uv.(k_u - k_v) for every pair (u, v) at q_uv = (mu_u + mu_v)/2. keys: [..., V, d] → [..., P]."""
    u, v = pairs[:, 0], pairs[:, 1]
    q = (mu[u] + mu[v]) / 2  # [P, d]
    diff = keys[..., u, :] - keys[..., v, :]  # [..., P, d]
    return (diff * q).sum(-1)


def predicted_log_amplification(
    counts: np.ndarray, mu: np.ndarray, pairs: np.ndarray, lr: float
) -> np.ndarray:
    """First-order (Lemma 7.1) log amplification per SGD step for every pair. → [P]."""
    pi = counts / counts.sum()
    drift = pi[:, None] * mu - pi[:, None] * (pi @ mu)[None, :]  # E[-grad k_u] at equal keys
    return lr * pair_log_amplification(drift, mu, pairs)


def _pairs(counts: np.ndarray) -> np.ndarray:
    """Every ordered pair (u, v) with c_u > c_v. → [P, 2]."""
    u, v = np.nonzero(counts[:, None] > counts[None, :])
    return np.stack([u, v], axis=1)


def early_sgd(
    counts: list[int],
    steps: int,
    lr: float,
    dim: int,
    query_noise: float,
    seeds: int,
    checkpoints: int,
    seed: int,
) -> dict[str, Any]:
    """Exposure vs count ratios over early SGD, averaged over ``seeds`` runs (expectation of Eq. 19)."""
    c = np.asarray(counts, dtype=np.float64)
    pairs = _pairs(c)
    if len(pairs) == 0:
        raise ConfigError(
            f"config key 'popularity.sgd.counts': need at least two different counts, got {counts}"
        )
    snaps = np.unique(np.linspace(0, steps, checkpoints + 1).round().astype(np.int64))
    rng = np.random.default_rng(seed)
    mu = orthonormal_means(rng, len(c), dim)
    amp = np.stack(
        [
            pair_log_amplification(sgd_run(c, mu, steps, lr, query_noise, rng, snaps), mu, pairs)
            for _ in range(seeds)
        ]
    )  # [seeds, S, P]
    log_cr = np.log(c[pairs[:, 0]] / c[pairs[:, 1]])  # [P]
    ratio = np.exp(amp).mean(0)  # E[exposure ratio] / count ratio, [S, P]
    log_er = log_cr[None, :] + np.log(ratio)
    exponent = (log_er * log_cr).sum(1) / (log_cr**2).sum()
    return {
        "steps": snaps.tolist(),
        "pairs": pairs.tolist(),
        "log_count_ratio": log_cr.tolist(),
        "log_exposure_ratio": log_er.tolist(),
        "mean_log_amplification": np.log(ratio).mean(1).tolist(),
        "predicted_log_amplification": (
            snaps[:, None] * predicted_log_amplification(c, mu, pairs, lr)[None, :]
        )
        .mean(1)
        .tolist(),
        "exponent": exponent.tolist(),
        "frac_pairs_exposure_gt_count": (ratio > 1).mean(1).tolist(),
    }
