"""The bias audit of a recommender that is not an LLM run: the semantic-ID generative
recommender (``recbias genrec``) or any :class:`~recbias.recs.Recommender` over item ids.

The same three measurements as the LLM audit, so the reports line up run by run: exposure
concentration of its top-K lists (popularity from all training targets), positional attention to
recent history items (when the model exposes ``history_attention``: mass per history item, right
aligned, as :mod:`recbias.genrec.recommender` returns it) and sensitivity of its lists to history
perturbations. Wording sensitivity, attribution and the token analyses need a prompt and do not
apply.

    audit_dir = audit_recommender(rec, ds, AuditConfig(), run_dir / "audit", name="genrec",
                                  meta={"run_name": cfg.name})
"""

from __future__ import annotations

import datetime as dt
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from recbias.audit.analyses import CachedRecommender, write_csv
from recbias.audit.config import AuditConfig
from recbias.audit.fairness_sections import concentration_section
from recbias.audit.run import AUDIT_FILE, headline, overview_section
from recbias.baselines.popularity import count_items
from recbias.config import to_dict
from recbias.data.dataset import PreparedDataset
from recbias.diagnostics.history_attention import HistoryAttention, positional_section
from recbias.diagnostics.sensitivity import history_sensitivity, sensitivity_section
from recbias.fsutil import atomic_dir
from recbias.metrics.concentration import concentration, exposure_counts
from recbias.recs import Recommender
from recbias.report.sections import Section, save_sections
from recbias.runs import git_commit, package_versions

ANALYSES = ("concentration", "positional", "sensitivity")


def attention_of(mass: torch.Tensor | np.ndarray, histories: pd.Series) -> HistoryAttention:
    """A right-aligned ``[n, max_len]`` mass per history item → :class:`HistoryAttention`
    (columns left of each history are NaN; shares renormalised over the history)."""
    mass = np.asarray(mass, dtype=np.float64).copy()
    width = mass.shape[1]
    lengths = np.array([min(len(h), width) for h in histories])
    for row, n in enumerate(lengths):
        mass[row, : width - n] = np.nan
    total = np.nansum(mass, axis=1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        share = np.where(total > 0, mass / total, np.nan)
    return HistoryAttention(mass, share, lengths)


def _subset(frame: pd.DataFrame, n: int, seed: int) -> pd.DataFrame:
    n = min(n, len(frame))
    order = np.random.default_rng(seed).permutation(len(frame))[:n]
    return frame.iloc[np.sort(order)].reset_index(drop=True)


def recommender_sections(
    rec: Recommender, ds: PreparedDataset, cfg: AuditConfig, out_dir: Path, name: str
) -> tuple[list[Section], dict[str, float]]:
    """The sections (and seconds per analysis) of :func:`audit_recommender`."""
    samples, n_items = ds.split(cfg.split), len(ds.titles)
    counts = count_items(ds.split("train"), n_items)
    sections: list[Section] = []
    timings: dict[str, float] = {}
    cached = CachedRecommender(rec)
    t0 = time.perf_counter()
    items = cached.recommend(samples, max(cfg.ks)).items
    conc = [concentration(items, k, n_items, counts, cfg.head_fraction, cfg.or_top, name)
            for k in cfg.ks]  # fmt: skip
    top = items[:, : max(cfg.ks)]
    sections.append(
        concentration_section({name: conc}, out_dir, {name: exposure_counts(top, n_items)})
    )
    timings["concentration"] = round(time.perf_counter() - t0, 2)
    if hasattr(rec, "history_attention"):
        t0 = time.perf_counter()
        rows = _subset(samples, cfg.limit(cfg.positional_samples), cfg.seed)
        att = attention_of(rec.history_attention(rows), rows["history"])
        write_csv(out_dir, f"positional_{name}", pd.DataFrame(att.share).add_prefix("item_"))
        sections.append(positional_section({name: att}, out_dir, cfg.positional_window,
                                           cfg.n_boot, cfg.seed))  # fmt: skip
        timings["positional"] = round(time.perf_counter() - t0, 2)
    t0 = time.perf_counter()
    rows = _subset(samples, cfg.limit(cfg.sensitivity_samples), cfg.seed)
    results = history_sensitivity(cached, rows, n_items, cfg.sensitivity)
    sec = sensitivity_section({name: results}, out_dir, cfg.n_boot, cfg.seed)
    sec.summary = f"{len(rows)} '{cfg.split}' samples, top-{cfg.sensitivity.k} lists."
    sections.append(sec)
    timings["sensitivity"] = round(time.perf_counter() - t0, 2)
    return sections, timings


def audit_recommender(
    rec: Recommender,
    ds: PreparedDataset,
    cfg: AuditConfig,
    out_dir: Path,
    name: str,
    meta: dict[str, Any] | None = None,
) -> Path:
    """Audit ``rec`` on ``ds`` into ``out_dir`` (``audit.json``, figures, data) atomically."""
    cfg.validate()
    with atomic_dir(Path(out_dir)) as tmp:
        tmp.chmod(0o755)
        sections, timings = recommender_sections(rec, ds, cfg, tmp, name)
        heads = headline(sections, model=name)
        sections.insert(0, overview_section(heads, timings))
        doc = {
            "kind": "audit",
            "recommender": name,
            "dataset": ds.name,
            "split": cfg.split,
            "config": to_dict(cfg),
            "timings_s": timings,
            "headline": dict(heads),
            "time_utc": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            "versions": package_versions(),
            "git": git_commit(),
            **(meta or {}),
        }
        save_sections(tmp / AUDIT_FILE, sections, doc)
    return Path(out_dir)
