"""Popularity channel (Prop. 4.4) on trained exact scorers: exposure vs count, fitted exponent.

Exposure of an item for one sample is its softmax probability under the model's exact scores
(or, with ``mode="topk"``, 1/K if it is in the top-K list). Token exposure of a semantic-ID token
(level l, code c) is the exposure summed over the items whose l-th code is c.

* Platform level (Matthew effect): mean exposure over samples vs the global training count; the
  exponent is the slope of log exposure on log count (1 = proportional, > 1 = super-linear),
  with a pairs-bootstrap CI over items/tokens.
* User level (echo chamber): within each sample, exposure vs the number of times the item/token
  occurs in that sample's own history; the slope is fitted after centring both logs per sample
  (a per-sample fixed effect, so only within-user ratios count), with a bootstrap over samples.

    logp = exact_log_probs(model, samples)                       # [n, n_items]
    exp_ = item_exposure(logp, "softmax", k=10)                    # [n, n_items]
    fit_exponent(counts, exp_.mean(0), n_boot=1000, seed=0)        # {"exponent", "lo", "hi", ...}
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from recbias.errors import ConfigError, DataError

SCORER_KEY = "model.kind"


def require_exact_scorer(model: Any) -> None:
    """Raise unless ``model`` has ``scores(samples) -> [n, n_items]`` (exact scoring)."""
    if not callable(getattr(model, "scores", None)):
        raise ConfigError(
            f"config key '{SCORER_KEY}': the exposure probe needs exact scoring, a "
            f"scores(samples) -> [n, n_items] method; {type(model).__name__} has none "
            "(beam-search-only scorers cannot give the probability of every item)"
        )


def exact_log_probs(model: Any, samples: pd.DataFrame) -> np.ndarray:
    """Normalised log-probabilities over the catalogue from ``model.scores``. → [n, n_items]."""
    require_exact_scorer(model)
    scores = model.scores
    raw = scores(samples)
    raw = raw.detach().cpu().numpy() if hasattr(raw, "detach") else np.asarray(raw)
    raw = raw.astype(np.float64)
    if raw.ndim != 2 or raw.shape[0] != len(samples):
        raise DataError(f"scores: expected [n={len(samples)}, n_items], got {raw.shape}")
    top = raw.max(1, keepdims=True)
    return raw - top - np.log(np.exp(raw - top).sum(1, keepdims=True))


def item_exposure(log_probs: np.ndarray, mode: str, k: int) -> np.ndarray:
    """Per-sample exposure of every item: softmax mass or top-K indicator / K. → [n, n_items]."""
    if mode == "softmax":
        return np.exp(log_probs)
    if mode != "topk":
        raise ConfigError(
            f"config key 'popularity.exposure': expected softmax or topk, got {mode!r}"
        )
    k = min(k, log_probs.shape[1])
    top = np.argpartition(-log_probs, k - 1, axis=1)[:, :k]
    out = np.zeros_like(log_probs)
    np.put_along_axis(out, top, 1.0 / k, axis=1)
    return out


def token_ids(codes: np.ndarray) -> tuple[np.ndarray, int]:
    """Flat token ids level * V + code of every item's semantic ID. codes: [n_items, L] → same."""
    codes = np.asarray(codes, dtype=np.int64)
    if codes.ndim != 2 or codes.min(initial=0) < 0:
        raise DataError(
            f"item codes: expected [n_items, levels] non-negative ints, got {codes.shape}"
        )
    vocab = int(codes.max(initial=0)) + 1
    return codes + vocab * np.arange(codes.shape[1])[None, :], vocab * codes.shape[1]


def token_exposure(exposure: np.ndarray, codes: np.ndarray) -> np.ndarray:
    """Sum item exposure per semantic-ID token. exposure: [n, n_items] → [n, n_tokens]."""
    flat, n_tokens = token_ids(codes)
    onehot = np.zeros((exposure.shape[1], n_tokens))
    for level in range(flat.shape[1]):
        onehot[np.arange(flat.shape[0]), flat[:, level]] += 1.0
    return exposure @ onehot


def token_counts(item_counts: np.ndarray, codes: np.ndarray) -> np.ndarray:
    """Token counts from item counts: every occurrence of an item counts each of its tokens."""
    flat, n_tokens = token_ids(codes)
    return np.bincount(
        flat.ravel(), weights=np.repeat(item_counts, flat.shape[1]), minlength=n_tokens
    )


def _ols_slope(x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    xc = x - x.mean()
    slope = float((xc * (y - y.mean())).sum() / (xc * xc).sum())
    return slope, float(y.mean() - slope * x.mean())


def fit_exponent(
    counts: np.ndarray, exposure: np.ndarray, n_boot: int, seed: int
) -> dict[str, Any]:
    """Slope of log exposure on log count over units with both > 0, with a pairs-bootstrap CI."""
    keep = (np.asarray(counts) > 0) & (np.asarray(exposure) > 0)
    x, y = np.log(np.asarray(counts, np.float64)[keep]), np.log(np.asarray(exposure)[keep])
    if len(np.unique(x)) < 2:
        return {"exponent": None, "lo": None, "hi": None, "n_units": int(keep.sum())}
    slope, intercept = _ols_slope(x, y)
    rng = np.random.default_rng(seed)
    boot = []
    for _ in range(n_boot):
        idx = rng.integers(0, len(x), len(x))
        if len(np.unique(x[idx])) > 1:
            boot.append(_ols_slope(x[idx], y[idx])[0])
    lo, hi = np.quantile(boot, [0.025, 0.975])
    return {
        "exponent": slope,
        "intercept": intercept,
        "lo": float(lo),
        "hi": float(hi),
        "n_units": int(keep.sum()),
        "n_zero_exposure": int(((np.asarray(counts) > 0) & (np.asarray(exposure) <= 0)).sum()),
    }


def history_units(histories: list, units: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    """(sample row [m], unit id [m]) of every history entry; units maps item -> [L] tokens."""
    rows, ids = [], []
    for row, hist in enumerate(histories):
        hist = np.asarray(hist, dtype=np.int64)
        flat = hist if units is None else units[hist].ravel()
        rows.append(np.full(len(flat), row))
        ids.append(flat)
    if not rows:
        return np.empty(0, np.int64), np.empty(0, np.int64)
    return np.concatenate(rows).astype(np.int64), np.concatenate(ids).astype(np.int64)


def _centre_per_row(rows: np.ndarray, values: np.ndarray, n_rows: int) -> np.ndarray:
    sums = np.bincount(rows, weights=values, minlength=n_rows)
    sizes = np.maximum(np.bincount(rows, minlength=n_rows), 1)
    return values - (sums / sizes)[rows]


def within_user_exponent(
    histories: list,
    exposure: np.ndarray,
    units: np.ndarray | None,
    n_boot: int,
    seed: int,
) -> dict[str, Any]:
    """Echo-chamber exponent: log exposure on log within-history count, centred per sample.

    exposure: [n, n_units]; ``units`` maps an item to its token ids ([n_items, L]) for the token
    level, or is None for items. Samples whose history units all occur equally often carry no
    information (their centred counts are 0); a catalogue without repeats gives exponent None.
    """
    n_rows, n_units = exposure.shape
    rows, ids = history_units(histories, units)
    keys, counts = np.unique(rows * n_units + ids, return_counts=True)
    r, u = keys // n_units, keys % n_units
    value = exposure[r, u]
    keep = value > 0
    r, x, y = r[keep], np.log(counts[keep]), np.log(value[keep])
    xc, yc = _centre_per_row(r, x, n_rows), _centre_per_row(r, y, n_rows)
    sxy = np.bincount(r, weights=xc * yc, minlength=n_rows)
    sxx = np.bincount(r, weights=xc * xc, minlength=n_rows)
    informative = int((sxx > 1e-12).sum())
    if informative == 0:
        return {"exponent": None, "lo": None, "hi": None, "n_informative_samples": 0}
    rng = np.random.default_rng(seed)
    weights = np.stack(
        [np.bincount(rng.integers(0, n_rows, n_rows), minlength=n_rows) for _ in range(n_boot)]
    )
    denom = weights @ sxx
    boot = (weights @ sxy)[denom > 0] / denom[denom > 0]
    lo, hi = np.quantile(boot, [0.025, 0.975])
    return {
        "exponent": float(sxy.sum() / sxx.sum()),
        "lo": float(lo),
        "hi": float(hi),
        "n_informative_samples": informative,
    }
