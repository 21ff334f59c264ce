"""Entry point of the probes: ``run_probe(channel, cfg, run_dir)`` writes a complete run dir.

run_dir receives ``config.toml`` (resolved), ``environment.json``, ``metrics.json`` and the
probe's PNG figure, each written atomically. Tests (or callers) may pass a fitted ``model`` or a
``factory`` (m -> fitted model, positional probe) instead of building one from ``cfg.model``.

    cfg = load_probe_config("positional", Path("configs/probe_positional.toml"))
    metrics = run_probe("positional", cfg, Path("runs/probe_positional"))
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from recbias.baselines.popularity import count_items
from recbias.config import load_config, write_resolved
from recbias.errors import ConfigError
from recbias.fsutil import write_json
from recbias.hardware import device_for, resolve_dtype
from recbias.probes import figures, latent, popularity, positional, sgd, synthetic
from recbias.probes import models as probe_models
from recbias.probes.config import (
    CONFIGS,
    LatentProbeConfig,
    PopularityProbeConfig,
    PositionalProbeConfig,
    ProbeModelConfig,
    SyntheticProbeConfig,
)
from recbias.report.results import results_section
from recbias.report.sections import Figure, Section, save_sections
from recbias.runs import seed_everything, write_environment

logger = logging.getLogger(__name__)
CHANNELS = tuple(CONFIGS)


def load_probe_config(channel: str, path: Path | None, overrides: list[str] | None = None) -> Any:
    if channel not in CONFIGS:
        raise ConfigError(f"probe channel {channel!r}: expected one of {', '.join(CHANNELS)}")
    return load_config(CONFIGS[channel], path, overrides)


@dataclass(frozen=True)
class ProbeData:
    """Data for an injected model: training samples, probed samples, catalogue size."""

    train: pd.DataFrame
    samples: pd.DataFrame
    n_items: int


def _resolve_dtype(model: ProbeModelConfig | None) -> str | None:
    """The trained model's ``dtype = "auto"`` resolved in place (recorded in config.toml)."""
    if model is None or model.kind not in ("genrec", "sasrec"):
        return None
    if model.kind == "sasrec":
        model.sasrec.dtype = resolve_dtype(model.sasrec.dtype, device_for(model.sasrec.device))
        return model.sasrec.dtype
    spec = model.genrec
    spec["dtype"] = resolve_dtype(spec.get("dtype", "auto"), device_for(spec.get("device", "cpu")))
    return spec["dtype"]


def run_probe(
    channel: str,
    cfg: Any,
    run_dir: Path,
    *,
    model: Any = None,
    factory: Callable[[float], Any] | None = None,
    data: ProbeData | None = None,
) -> dict[str, Any]:
    """Run one probe; returns (and writes) its metrics dict.

    ``model`` (popularity, latent) or ``factory`` (positional) replace the model built from
    ``cfg.model``; they need ``data``.
    """
    if (model is not None or factory is not None) and data is None:
        raise ConfigError("run_probe: an injected model or factory needs data=ProbeData(...)")
    if channel == "popularity" and model is not None:
        popularity.require_exact_scorer(model)
    runners = {
        "positional": _positional,
        "popularity": _popularity,
        "latent": _latent,
        "synthetic": _synthetic,
    }
    if channel not in runners:
        raise ConfigError(f"probe channel {channel!r}: expected one of {', '.join(CHANNELS)}")
    if not isinstance(cfg, CONFIGS[channel]):
        raise ConfigError(
            f"probe {channel!r}: expected a {CONFIGS[channel].__name__}, got {type(cfg).__name__}"
        )
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    dtype = _resolve_dtype(getattr(cfg, "model", None))
    write_resolved(cfg, run_dir / "config.toml")
    write_environment(run_dir, cfg.seed, dtype)
    seed_everything(cfg.seed)
    metrics = {"channel": channel, **runners[channel](cfg, run_dir, model, factory, data)}
    write_json(run_dir / "metrics.json", metrics)
    save_sections(run_dir / "sections.json", [probe_section(channel, metrics)])
    return metrics


_TITLES = {
    "positional": (
        "Positional bias (Prop. 4.1)",
        "Attention mass on the most recent items as the positional strength m grows. Look for "
        "the near-window mass rising with m (recency dominates) and for what it costs in accuracy "
        "and diversity on the trained models.",
    ),
    "popularity": (
        "Popularity amplification (Prop. 4.4)",
        "Exposure against training frequency on log-log axes. A fitted exponent above 1 means "
        "exposure grows faster than counts: popular items (or tokens) are amplified.",
    ),
    "latent": (
        "Latent drivers (Prop. 4.5)",
        "Gaussian noise of scale σ in the attention logits. Look for the spread of pairwise "
        "attention log-odds growing like √2·σ (the log-normal law) and for top-K lists that stop "
        "agreeing across noise draws.",
    ),
    "synthetic": (
        "Synthetic data in the retraining loop (Prop. 4.6)",
        "Squared index (HHI) of the model's distribution over retraining rounds when a fraction λ "
        "of the logs comes from the model itself. Look for flat curves at λ = 0 and steeper rises "
        "for larger λ.",
    ),
}


def probe_section(channel: str, metrics: dict[str, Any]) -> Section:
    """The report section of one probe run: its headline values, tables and figure."""
    title, caption = _TITLES[channel]
    figures = [Figure(f, caption) for f in metrics.get("figures", [])]
    body = {k: v for k, v in metrics.items() if k != "figures"}
    return results_section(f"probe-{channel}", title, body, figures)


def _positional(
    cfg: PositionalProbeConfig, run_dir: Path, model: Any, factory: Any, data: ProbeData | None
) -> dict[str, Any]:
    p = cfg.positional
    iso = positional.isolated_curve(p, np.random.default_rng(cfg.seed))
    iso["non_decreasing"] = positional.is_non_decreasing(iso["near_mass_sampled"])
    out: dict[str, Any] = {
        "window": p.window,
        "k": p.k,
        "isolated": iso,
        "trained": None,
        "trained_skipped": None,
    }
    if factory is None and cfg.model.kind == "genrec":
        reason = probe_models.genrec_available()
        if reason is None:
            ds = probe_models.load_dataset(cfg.data)
            factory = probe_models.genrec_factory(cfg.model, ds)
            data = ProbeData(
                ds.split("train"), probe_models.probe_samples(ds, cfg.model.samples), len(ds.items)
            )
        else:
            logger.warning("positional probe: %s; isolated head only", reason)
            out["trained_skipped"] = reason
    if factory is not None and data is not None:
        rows = positional.trained_curve(
            factory, p.m_grid, data.samples, p.window, p.k, data.n_items
        )
        out["trained"] = rows
        out["trained_non_decreasing"] = positional.is_non_decreasing([r["near_mass"] for r in rows])
    elif out["trained_skipped"] is None:
        out["trained_skipped"] = "model.kind = 'none'"
    out["figures"] = [figures.positional_figure(out, run_dir / "positional.png").name]
    return out


def _load(cfg: Any, fit: Callable[[Any, Any], Any]) -> tuple[Any, ProbeData]:
    ds = probe_models.load_dataset(cfg.data)
    samples = probe_models.probe_samples(ds, cfg.model.samples)
    return fit(cfg.model, ds), ProbeData(ds.split("train"), samples, len(ds.items))


def _trained_exposure(
    cfg: PopularityProbeConfig, model: Any, data: ProbeData | None
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Platform- and user-level exponents of a trained exact scorer (items, and tokens if coded)."""
    p = cfg.popularity
    if model is None or data is None:
        model, data = _load(cfg, probe_models.fit_scorer)
    train, samples = data.train, data.samples
    exp_items = popularity.item_exposure(
        popularity.exact_log_probs(model, samples), p.exposure, p.k
    )
    counts = count_items(train, exp_items.shape[1], p.count)
    units: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray | None]] = {
        "item": (counts, exp_items, None)
    }
    codes = probe_models.item_codes(model)
    if codes is not None:
        flat, _ = popularity.token_ids(codes)
        units["token"] = (
            popularity.token_counts(counts, codes),
            popularity.token_exposure(exp_items, codes),
            flat,
        )
    out, curves = {}, {}
    for name, (c, e, flat) in units.items():
        fit = popularity.fit_exponent(c, e.mean(0), p.bootstrap, cfg.seed)
        user = popularity.within_user_exponent(
            samples["history"].tolist(), e, flat, p.bootstrap, cfg.seed
        )
        out[name] = {"platform": fit, "user": user}
        curves[name] = (c, e.mean(0), fit)
    return out, curves


def _popularity(
    cfg: PopularityProbeConfig, run_dir: Path, model: Any, factory: Any, data: ProbeData | None
) -> dict[str, Any]:
    s = cfg.popularity.sgd
    out: dict[str, Any] = {
        "exposure": cfg.popularity.exposure,
        "sgd": sgd.early_sgd(
            s.counts, s.steps, s.lr, s.dim, s.query_noise, s.seeds, s.checkpoints, cfg.seed
        ),
    }
    curves: dict[str, Any] = {}
    if model is not None or cfg.model.kind != "none":
        out["model"], curves = _trained_exposure(cfg, model, data)
    out["figures"] = [figures.popularity_figure(out, run_dir / "popularity.png", curves).name]
    return out


def _latent(
    cfg: LatentProbeConfig, run_dir: Path, model: Any, factory: Any, data: ProbeData | None
) -> dict[str, Any]:
    lt = cfg.latent
    rng = np.random.default_rng(cfg.seed)
    means = -lt.mean_gap * np.arange(lt.history_len)  # distinct relevances, gap of pair (0, 1)
    head_k = max(1, lt.history_len // 2)
    head, draws = [], {}
    for sigma in lt.sigmas:
        draws[sigma] = latent.head_log_odds(means, sigma, lt.head_draws, rng)
        row = latent.lognormal_check(draws[sigma], lt.mean_gap, sigma, lt.kappa)
        row["jaccard_topk"] = latent.head_topk_stability(means, sigma, 200, head_k, rng)
        head.append(row)
    out: dict[str, Any] = {
        "mean_gap": lt.mean_gap,
        "k": lt.k,
        "head_k": head_k,
        "head": head,
        "model": None,
    }
    if model is None and cfg.model.kind == "genrec":
        model, data = _load(cfg, probe_models.fit_genrec)
    if model is not None and data is not None:
        out["model"] = latent.model_curve(
            model, data.samples, lt.sigmas, lt.draws, lt.k, cfg.seed, lt.kappa
        )
    out["figures"] = [figures.latent_figure(out, run_dir / "latent.png", draws).name]
    return out


def _synthetic(
    cfg: SyntheticProbeConfig, run_dir: Path, model: Any, factory: Any, data: ProbeData | None
) -> dict[str, Any]:
    sy = cfg.synthetic
    p_true = synthetic.zipf_distribution(sy.n_items, sy.zipf)
    rng = np.random.default_rng(cfg.seed)
    curves = []
    for lam in sy.lambdas:
        mc = synthetic.simulate(p_true, sy.logs_per_round, lam, sy.rounds, sy.seeds, rng)
        exact = synthetic.expected_hhi(p_true, sy.logs_per_round, lam, sy.rounds)
        curves.append(
            {
                "lambda": lam,
                "expected": exact.tolist(),
                "mc_mean": mc.mean(0).tolist(),
                "mc_se": (mc.std(0, ddof=1) / np.sqrt(sy.seeds)).tolist()
                if sy.seeds > 1
                else [0.0] * len(exact),
                "fixed_point": synthetic.fixed_point(p_true, sy.logs_per_round, lam),
                "expected_increase": float(exact[-1] - exact[0]),
                "mc_increase": float(mc.mean(0)[-1] - mc.mean(0)[0]),
            }
        )
    out = {"organic_hhi": float(np.square(p_true).sum()), "curves": curves}
    out["figures"] = [figures.synthetic_figure(out, run_dir / "synthetic.png").name]
    return out
