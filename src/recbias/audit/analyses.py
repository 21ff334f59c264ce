"""The analyses of an audit, one function each: ``(ctx, out_dir) -> list[Section]``.

    sections = fairness(ctx, out_dir) + attribution(ctx, out_dir)

Figures go to ``out_dir/figures``, raw per-sample tables to ``out_dir/data`` (CSV).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd

from recbias.audit.context import AuditContext
from recbias.audit.fairness_sections import concentration_section, fairness_section
from recbias.decoding.information_gain import trie_information
from recbias.diagnostics.attribution import AttributionResult, attribute, attribution_section
from recbias.diagnostics.cooccurrence import cooccurrence_rates, cooccurrence_section
from recbias.diagnostics.groups import (
    POPULARITY_GROUPS_TEXT,
    genre_grouping,
    genres_of,
    item_relevance,
    popularity_grouping,
    relevance_grouping,
)
from recbias.diagnostics.history_attention import history_attention, positional_section
from recbias.diagnostics.sensitivity import (
    history_sensitivity,
    llm_factory,
    sensitivity_section,
    wording_sensitivity,
)
from recbias.diagnostics.token_ig import (
    entropy_by_step,
    target_token_losses,
    token_ig_section,
    token_ig_summary,
)
from recbias.errors import DataError
from recbias.evaluation.predictions import StoredPredictions
from recbias.fsutil import atomic_path
from recbias.llmrec import build_trie, make_recommender
from recbias.lm.batching import encode_samples
from recbias.metrics.concentration import concentration, exposure_counts
from recbias.metrics.fairness import ItemGrouping, group_gap, top1_group_shares
from recbias.recs import Recommendations
from recbias.report.sections import Section

log = logging.getLogger(__name__)
DATA_DIR = "data"


def write_csv(out_dir: Path, name: str, frame: pd.DataFrame) -> str:
    """Write ``out_dir/data/name.csv`` atomically; return the path relative to ``out_dir``."""
    rel = f"{DATA_DIR}/{name}.csv"
    with atomic_path(out_dir / rel) as tmp:
        frame.to_csv(tmp, index=False)
    return rel


# --------------------------------------------------------------------------- fairness


def item_relevance_scores(ctx: AuditContext) -> np.ndarray:
    """GDRT Eq. 2 of every catalog item under ``relevance_model``: ``[n_items]`` (cached)."""
    if "relevance" not in ctx.cache:
        lm = ctx.base() if ctx.cfg.relevance_model == "base" else ctx.tuned()
        ctx.cache["relevance"] = item_relevance(
            lm.model, lm.builder, ctx.titles, dtype=ctx.run_cfg.model.dtype,
            batch_size=ctx.cfg.batch_size,
        )  # fmt: skip
    return ctx.cache["relevance"]


def groupings(ctx: AuditContext) -> tuple[list[ItemGrouping], list[str]]:
    """The configured groupings and notes on those skipped (a dataset without genres)."""
    out, notes = [], []
    for kind in ctx.cfg.groupings:
        if kind == "relevance":
            out.append(relevance_grouping(item_relevance_scores(ctx), ctx.cfg.n_groups))
        elif kind == "popularity":
            out.append(popularity_grouping(ctx.popularity, ctx.cfg.n_groups))
        else:
            try:
                out.append(genre_grouping(genres_of(ctx.ds.items)))
            except DataError as exc:
                notes.append(f"genre grouping skipped: {exc}")
                log.warning("genre grouping skipped: %s", exc)
    return out, notes


def fairness(ctx: AuditContext, out_dir: Path) -> list[Section]:
    """MGU/DGU and top-1 shares per predictions file, then one concentration section."""
    preds = ctx.predictions()
    groups, notes = groupings(ctx)
    modes = ["pooled", "per_user"] if ctx.cfg.mode == "both" else [ctx.cfg.mode]
    sections, conc, exposure = [], {}, {}
    for name, pred in preds.items():
        where = str(ctx.run_dir / "predictions" / f"{name}.jsonl")
        hist = ctx.histories(pred.sample_ids)
        gaps = [group_gap(pred.items, hist, g, k, mode, where)  # type: ignore[arg-type]
                for g in groups for k in ctx.cfg.ks for mode in modes]  # fmt: skip
        top1 = [top1_group_shares(pred.items, pred.targets, g, where) for g in groups]
        sec = fairness_section(gaps, top1, out_dir, name)
        sec.summary += "".join(f" Note: {n}." for n in notes)
        if any(g.name == "popularity" for g in groups):
            sec.summary += " " + POPULARITY_GROUPS_TEXT
        sections.append(sec)
        conc[name] = [_concentration(ctx, pred, k, where) for k in ctx.cfg.ks]
        exposure[name] = exposure_counts(pred.items[:, : max(ctx.cfg.ks)], ctx.n_items)
    sections.append(concentration_section(conc, out_dir, exposure))
    return sections


def _concentration(ctx: AuditContext, pred: StoredPredictions, k: int, where: str):
    return concentration(
        pred.items, k, ctx.n_items, ctx.popularity, ctx.cfg.head_fraction, ctx.cfg.or_top, where
    )


# --------------------------------------------------------------------------- attribution


def attribution(ctx: AuditContext, out_dir: Path) -> list[Section]:
    """Feature-ablation attribution of the tuned (and base) model on the same samples."""
    samples = ctx.subset(ctx.cfg.attribution_samples)
    label = ctx.run_cfg.train.objective.name
    models = {label: ctx.tuned}
    if ctx.cfg.compare_base:
        models = {"base": ctx.base, **models}
    results: dict[str, AttributionResult] = {}
    for name, get in models.items():
        lm = get()
        results[name] = attribute(lm.model, lm.builder, samples, ctx.titles, ctx.cfg.attribution)
        write_csv(out_dir, f"attribution_{name}", results[name].table)
    sec = attribution_section(results, out_dir, ctx.cfg.n_boot, ctx.cfg.seed)
    sec.summary += f" {len(samples)} '{ctx.cfg.split}' samples; per-sample rows in {DATA_DIR}/."
    return [sec]


# --------------------------------------------------------------------------- co-occurrence


def cooccurrence(ctx: AuditContext, out_dir: Path) -> list[Section]:
    builder = ctx.tokenizer_builder()
    return [cooccurrence_section(cooccurrence_rates(builder, ctx.ds.split("train"), ctx.titles),
                                 out_dir)]  # fmt: skip


# --------------------------------------------------------------------------- token IG


def token_ig(ctx: AuditContext, out_dir: Path) -> list[Section]:
    """IG token shares and losses on training samples; entropy per step of the LLM's lists."""
    cfg, lm = ctx.cfg.token_ig, ctx.tuned()
    trie = build_trie(lm.builder, ctx.titles, range(ctx.n_items))
    info = trie_information(trie, ctx.train_counts)
    train = ctx.ds.split("train")
    n = ctx.cfg.limit(cfg.max_samples)
    rows = train.iloc[np.sort(np.random.default_rng(ctx.cfg.seed).permutation(len(train))[:n])]
    samples = encode_samples(lm.builder, rows, ctx.titles, lm.max_length)
    pad = lm.builder.tokenizer.pad_token_id
    losses = target_token_losses(lm.model, samples, pad, ctx.run_cfg.model.dtype, cfg.batch_size)
    summary = token_ig_summary(trie, info, samples, ctx.titles, cfg.low_quantile, losses)
    curves = None
    preds = ctx.predictions()
    if "llm" in preds:
        items = preds["llm"].items[:, : cfg.top_k]
        curves = entropy_by_step(trie, info, ctx.train_counts, items, preds["llm"].targets,
                                 cfg.entropy)  # fmt: skip
    sec = token_ig_section(summary, curves, out_dir, "llm")
    sec.summary += f" Losses of the tuned model on {len(samples)} training samples."
    return [sec]


# --------------------------------------------------------------------------- sensitivity


class CachedRecommender:
    """Memoises ``recommend`` by (sample ids, histories, k): the unperturbed lists are decoded
    once, not once per perturbation."""

    def __init__(self, rec) -> None:
        self.rec, self.name = rec, rec.name
        self._memo: dict[tuple, Recommendations] = {}

    def recommend(self, samples: pd.DataFrame, k: int) -> Recommendations:
        key = (
            tuple(int(s) for s in samples["sample_id"]),
            tuple(tuple(int(i) for i in h) for h in samples["history"]),
            k,
        )
        if key not in self._memo:
            self._memo[key] = self.rec.recommend(samples, k)
        return self._memo[key]


def sensitivity(ctx: AuditContext, out_dir: Path) -> list[Section]:
    """History perturbations and instruction rewordings of the run's own LLM recommender."""
    samples = ctx.subset(ctx.cfg.sensitivity_samples)
    rec = make_recommender(ctx.run_cfg, ctx.ds, ctx.tuned(), ctx.run_dir)
    cached = CachedRecommender(rec)
    make = llm_factory(rec)

    def factory(instruction: str | None):
        return cached if instruction is None else make(instruction)

    results = history_sensitivity(cached, samples, ctx.n_items, ctx.cfg.sensitivity)
    results += wording_sensitivity(factory, samples, ctx.cfg.sensitivity)
    frame = pd.DataFrame({
        "sample_id": np.tile(samples["sample_id"].to_numpy(), len(results)),
        "perturbation": np.repeat([r.name for r in results], len(samples)),
        "jaccard": np.concatenate([r.jaccard for r in results]),
        "rank_original": np.concatenate([r.rank_original for r in results]),
        "rank_perturbed": np.concatenate([r.rank_perturbed for r in results]),
    })  # fmt: skip
    write_csv(out_dir, "sensitivity", frame)
    sec = sensitivity_section({"llm": results}, out_dir, ctx.cfg.n_boot, ctx.cfg.seed)
    sec.summary = f"{len(samples)} '{ctx.cfg.split}' samples, top-{ctx.cfg.sensitivity.k} lists."
    return [sec]


# --------------------------------------------------------------------------- positional


def positional(ctx: AuditContext, out_dir: Path) -> list[Section]:
    """Attention to each history item at the decision position, tuned (and base) model."""
    rows = ctx.subset(ctx.cfg.positional_samples)
    models = {ctx.run_cfg.train.objective.name: ctx.tuned}
    if ctx.cfg.compare_base:
        models = {"base": ctx.base, **models}
    results = {}
    for name, get in models.items():
        lm = get()
        samples = encode_samples(lm.builder, rows, ctx.titles, lm.max_length, with_target=False)
        pad = lm.builder.tokenizer.pad_token_id
        results[name] = history_attention(lm.model, samples, pad, ctx.cfg.batch_size)
        write_csv(out_dir, f"positional_{name}", pd.DataFrame(
            results[name].share, columns=[f"item_{j}" for j in range(results[name].share.shape[1])]
        ).assign(sample_id=rows["sample_id"].to_numpy()))  # fmt: skip
    window = ctx.cfg.positional_window
    sec = positional_section(results, out_dir, window, ctx.cfg.n_boot, ctx.cfg.seed)
    sec.summary = f"{len(rows)} '{ctx.cfg.split}' samples; per-sample shares in {DATA_DIR}/."
    return [sec]


Analysis = Callable[[AuditContext, Path], list[Section]]
