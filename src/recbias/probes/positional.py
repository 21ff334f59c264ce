"""Positional channel (Prop. 4.1): near-window attention mass vs the positional strength m.

Measured (a) on an isolated ALiBi head, analytically (equal content logits) and with sampled
queries/keys, and (b) on trained models built by a factory ``m -> fitted model`` that exposes
``history_attention`` (mass per history *item*, index -1 = most recent). For trained models the
accuracy/diversity trade-off (NDCG@k, coverage and Gini of the top-k lists) is reported per m.

    curve = isolated_curve(cfg.positional, np.random.default_rng(0))
    rows = trained_curve(factory, cfg.positional.m_grid, test_samples, window=2, k=10, n_items=n)
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any, Protocol

import numpy as np
import pandas as pd

from recbias.errors import DataError
from recbias.metrics.ranking import ndcg, target_ranks
from recbias.probes import heads
from recbias.probes.config import PositionalSection

logger = logging.getLogger(__name__)


class AttentionModel(Protocol):
    def history_attention(self, samples: pd.DataFrame) -> Any: ...  # [n, max_len]

    def recommend(self, samples: pd.DataFrame, k: int) -> Any: ...  # Recommendations


ModelFactory = Callable[[float], AttentionModel]


def isolated_curve(cfg: PositionalSection, rng: np.random.Generator) -> dict[str, list[float]]:
    """Near-window mass A_N(m) of the isolated head for every m of the grid (items, not tokens)."""
    bias = heads.alibi_bias(cfg.history_len, cfg.tokens_per_item)
    n_tokens = bias.shape[0]
    content = heads.sampled_content(rng, cfg.key_draws, n_tokens, cfg.head_dim)  # [draws, T]
    analytic, mean, std, slope = [], [], [], []
    for m in cfg.m_grid:
        flat = heads.attention(np.zeros(n_tokens), m, bias)
        analytic.append(
            float(heads.near_mass(heads.item_mass(flat, cfg.tokens_per_item), cfg.window))
        )
        items = heads.item_mass(heads.attention(content, m, bias), cfg.tokens_per_item)
        mass = heads.near_mass(items, cfg.window)  # [draws]
        mean.append(float(mass.mean()))
        std.append(float(mass.std()))
        grad = heads.near_mass_derivative(content, m, bias, cfg.tokens_per_item, cfg.window)
        slope.append(float(grad.mean()))
    return {
        "m": list(cfg.m_grid),
        "near_mass_analytic": analytic,
        "near_mass_sampled": mean,
        "near_mass_sampled_std": std,
        "d_near_mass_dm_sampled": slope,
    }


def _as_numpy(x: Any) -> np.ndarray:
    return x.detach().cpu().numpy() if hasattr(x, "detach") else np.asarray(x)


def model_near_mass(model: AttentionModel, samples: pd.DataFrame, window: int) -> np.ndarray:
    """Per-sample attention mass on the most recent ``window`` history items. → [n]."""
    attn = _as_numpy(model.history_attention(samples)).astype(np.float64)
    if attn.ndim != 2 or attn.shape[0] != len(samples):
        raise DataError(
            f"history_attention: expected [n={len(samples)}, max_len], got {attn.shape}"
        )
    sums = attn.sum(1)
    if not np.allclose(sums, 1.0, atol=1e-3):
        raise DataError(
            f"history_attention: rows must sum to 1, got sums in [{sums.min()}, {sums.max()}]"
        )
    return heads.near_mass(attn, window)


def gini(counts: np.ndarray) -> float:
    """Gini coefficient of non-negative exposure counts [n_items] (0 = equal, → 1 = one item)."""
    x = np.sort(np.asarray(counts, dtype=np.float64))
    n, total = len(x), x.sum()
    if n == 0 or total == 0:
        return 0.0
    ranks = np.arange(1, n + 1)
    return float(((2 * ranks - n - 1) * x).sum() / (n * total))


def list_diversity(items: np.ndarray, n_items: int) -> dict[str, float]:
    """Catalogue coverage and Gini of top-k lists. items: [n, k] ids, -1 = empty slot."""
    valid = items[items >= 0]
    counts = np.bincount(valid, minlength=n_items)
    return {"coverage": float((counts > 0).mean()), "gini": gini(counts)}


def evaluate_model(
    model: AttentionModel, samples: pd.DataFrame, window: int, k: int, n_items: int
) -> dict[str, float]:
    """Near mass, NDCG@k, coverage and Gini of one trained model on ``samples``."""
    mass = model_near_mass(model, samples, window)
    recs = model.recommend(samples, k)
    items = np.asarray(recs.items)
    ranks = target_ranks(items, samples["target"].to_numpy(dtype=np.int64))
    return {
        "near_mass": float(mass.mean()),
        "near_mass_std": float(mass.std()),
        f"ndcg@{k}": float(ndcg(ranks, k).mean()),
        **list_diversity(items, n_items),
    }


def trained_curve(
    factory: ModelFactory,
    m_grid: list[float],
    samples: pd.DataFrame,
    window: int,
    k: int,
    n_items: int,
) -> list[dict[str, float]]:
    """One fitted model per m (``factory(m)``), each evaluated by :func:`evaluate_model`."""
    rows = []
    for m in m_grid:
        logger.info("positional probe: fitting the model with m = %g", m)
        row = {"m": float(m), **evaluate_model(factory(m), samples, window, k, n_items)}
        logger.info("positional probe: m = %g → %s", m, row)
        rows.append(row)
    return rows


def is_non_decreasing(values: list[float], tol: float = 1e-9) -> bool:
    return bool(np.all(np.diff(np.asarray(values)) >= -tol))
