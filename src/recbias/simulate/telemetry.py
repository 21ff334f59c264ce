"""Collapse telemetry: an early-warning signal from gain, persistence and diversity trends.

Following the directional pattern of "collapse telemetry" (paper 002: rising gain G, recursive
persistence p, declining diversity δ), computed at every round r ≥ 2 over the trailing window
W_r = the last ``window`` rounds (≥ 1) up to r, at least two of them:

* gain       G_r = slope_W(exposure_hhi) / mean_W(exposure_hhi)   relative HHI growth per round
                   (slope = ordinary least squares against the round number);
* persistence p_r = mean_W(exposure_persistence)                   Pearson correlation of the
                   exposure shares of consecutive rounds (near 1: the same items keep the same
                   exposure);
* diversity  δ_r = slope_W(consumption_entropy)                    nats per round (negative when
                   consumption narrows).

The alert fires at round r, once the window is full (``window`` rounds after round 0), when all
three directions hold beyond their thresholds:
``G_r > gain_threshold and p_r > persistence_threshold and δ_r < −diversity_threshold``;
``score_r`` counts the conditions met (0–3).

    tel = collapse_telemetry(rows, cfg.telemetry)
    tel["first_alert_round"]        # None if it never fired
"""

from __future__ import annotations

from typing import Any

import numpy as np

from recbias.simulate.config import TelemetryConfig


def ols_slope(y: np.ndarray) -> float:
    """Least-squares slope of y against 0..len(y)-1 (0 for fewer than two points)."""
    if len(y) < 2:
        return 0.0
    x = np.arange(len(y), dtype=np.float64)
    x -= x.mean()
    return float(np.sum(x * (y - y.mean())) / np.sum(x * x))


def _signal(rows: list[dict[str, Any]], cfg: TelemetryConfig, end: int) -> dict[str, Any]:
    window = rows[max(1, end - cfg.window + 1) : end + 1]
    hhi = np.array([r["exposure_hhi"] for r in window])
    gain = ols_slope(hhi) / hhi.mean() if hhi.mean() > 0 else 0.0
    pers = float(np.mean([r["exposure_persistence"] for r in window]))
    div = ols_slope(np.array([r["consumption_entropy"] for r in window]))
    met = [gain > cfg.gain_threshold, pers > cfg.persistence_threshold]
    met.append(div < -cfg.diversity_threshold)
    full = len(window) >= cfg.window  # two-point slopes are noise: no alert before a full window
    return {
        "round": rows[end]["round"],
        "gain": gain,
        "persistence": pers,
        "diversity_trend": div,
        "score": int(sum(met)),
        "alert": full and all(met),
    }


def collapse_telemetry(rows: list[dict[str, Any]], cfg: TelemetryConfig) -> dict[str, Any]:
    """Telemetry series and summary from per-round metric rows (row 0 = round 0)."""
    series = [_signal(rows, cfg, end) for end in range(2, len(rows))]
    alerts = [s["round"] for s in series if s["alert"]]
    return {
        "definition": "alert = gain > g* and persistence > p* and diversity_trend < -d*",
        "thresholds": {
            "window": cfg.window,
            "gain": cfg.gain_threshold,
            "persistence": cfg.persistence_threshold,
            "diversity": cfg.diversity_threshold,
        },
        "series": series,
        "first_alert_round": alerts[0] if alerts else None,
        "alert_rounds": len(alerts),
    }
