"""The bias table of a comparison: popularity concentration and MGU/DGU of every method's lists.

Next to accuracy, a debiasing method is judged by what it does to the lists (SPRec Tab. 2/3,
GDRT Fig. 3). For each row of the comparison, on the same test samples as the accuracy table,
from the top-``k`` lists of ``predictions/<stem>.jsonl``:

* ``Gini@k``: Gini of exposure over the whole catalog (:func:`recbias.metrics.concentration.gini`);
* ``Coverage@k``: share of the catalog recommended at least once;
* ``Tail@k``: share of the slots that go to long-tail items, outside the short head of the
  ``head_fraction`` most popular items (:func:`recbias.metrics.concentration.head_items`);
* ``MGU@k`` / ``DGU@k``: SPRec's pooled group unfairness over G popularity groups of equal item
  counts (:func:`recbias.diagnostics.groups.popularity_grouping`), history shares from the same
  samples' histories (:func:`recbias.metrics.fairness.group_gap`, ``mode="pooled"``).

Popularity (head items and groups) counts every interaction of the training split before
subsampling (``popularity.parquet``), not the sampled training targets.

These are set-level metrics (one number per list set), and a bootstrap over test samples is
biased for them: a resample holds fewer distinct samples, so its coverage is lower and its Gini
higher than the full set's, and the percentile interval can miss the point estimate. So:

* a cell is the mean over seeds with, for S > 1 seeds, the Student t-interval over seeds (as the
  accuracy table); one seed gives the value alone;
* Δ vs the row's ``vs`` (the accuracy table's reference or decoding-group reference) is the
  seed-averaged difference, with the t-interval over seeds of the per-seed differences (S > 1), and
  the p-value of a paired randomisation test: R times, each test sample's two lists (the row's
  and vs's, in every seed) are swapped with probability 1/2 (the same swaps in every seed), the
  seed-averaged Δ is recomputed, and p = (1 + #{|Δ*| ≥ |Δ|}) / (1 + R) (seed 0). Under "the two
  methods' lists are exchangeable per sample" this is exact up to Monte Carlo error, whatever the
  metric. It holds the trained models fixed, so it sees the test samples' variation only; the
  interval over seeds sees the training's. ``*`` marks p < 0.05 where, with several seeds, the
  t-interval over seeds also excludes 0.
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from recbias.compare.table import LEVEL, MethodRuns, seed_interval
from recbias.config import Config, spec
from recbias.data.config import DataConfig
from recbias.data.dataset import PreparedDataset
from recbias.data.prepare import prepare_dataset
from recbias.diagnostics.groups import POPULARITY_GROUPS_TEXT, popularity_grouping
from recbias.errors import ConfigError, DataError
from recbias.evaluation.predictions import StoredPredictions, read_predictions_jsonl
from recbias.evaluation.summary import format_value, to_jsonable
from recbias.fsutil import write_text
from recbias.metrics.concentration import coverage, gini, head_items, top_k_lists
from recbias.metrics.fairness import mgu_dgu
from recbias.metrics.stats import align_sample_ids

NAMES = ("Gini", "Coverage", "Tail", "MGU", "DGU")


@dataclass
class BiasTableConfig(Config):
    """The bias table of ``recbias compare`` (``[bias]``)."""

    enabled: bool = field(
        default=True, metadata={"help": "write the bias table (concentration, MGU/DGU)"}
    )
    k: int | None = field(
        default=None,
        metadata=spec(
            "cut-off K of the lists (default: 10, capped at the shortest lists of any row)", ge=1
        ),
    )
    n_groups: int = field(default=5, metadata=spec("popularity groups of MGU/DGU", ge=2))
    head_fraction: float = field(
        default=0.2, metadata=spec("share of most popular items that is the short head", gt=0, lt=1)
    )


DEFAULT_K = 10


def bias_k(cfg: BiasTableConfig, widths: Mapping[str, int]) -> int:
    """The cut-off the table uses: ``cfg.k``, else 10 capped at the shortest lists; ``widths``:
    each row's list length. An explicit K above a row's lists is an error naming the row."""
    if cfg.k is None:
        return min(DEFAULT_K, *widths.values())
    short = {name: w for name, w in widths.items() if w < cfg.k}
    if short:
        name, width = next(iter(short.items()))
        raise ConfigError(
            f"config key 'bias.k': {cfg.k} is above the lists of '{name}' ({width} items); "
            f"set bias.k <= {width} or leave it unset"
        )
    return cfg.k


@dataclass(frozen=True)
class BiasData:
    """What every row shares: the samples' history group mass and the item groups and head."""

    ids: np.ndarray  # [n] sample ids, the accuracy table's order
    history_mass: np.ndarray  # [n, G] popularity-group weight of each sample's history
    weights: np.ndarray  # [n_items, G] popularity grouping (one-hot)
    head: np.ndarray  # [n_items] bool, short-head items
    k: int

    @classmethod
    def from_dataset(
        cls, ds: PreparedDataset, ids: np.ndarray, cfg: BiasTableConfig, k: int, split: str = "test"
    ) -> BiasData:
        popularity = ds.train_popularity()
        weights = popularity_grouping(popularity, cfg.n_groups).weights
        samples = ds.split(split).set_index("sample_id")
        missing = ~np.isin(ids, samples.index.to_numpy())
        if missing.any():
            raise DataError(
                f"bias table: sample {int(ids[missing][0])} is not in the '{split}' split of "
                f"{ds.path} (predictions of another dataset?)"
            )
        mass = np.stack([weights[np.asarray(h, dtype=np.int64)].sum(axis=0)
                         for h in samples.loc[ids, "history"]])  # fmt: skip
        return cls(ids, mass, weights, head_items(popularity, cfg.head_fraction), k)

    @property
    def n_items(self) -> int:
        return len(self.weights)


def list_bias(lists: np.ndarray, history_mass: np.ndarray, data: BiasData) -> np.ndarray:
    """``[5]`` Gini, Coverage, Tail, MGU, DGU of top-k ``lists [m, k]`` (−1 = empty slot) and
    the pooled history group mass ``history_mass [G]`` of the same samples."""
    flat = lists[lists >= 0]
    counts = np.bincount(flat, minlength=data.n_items)
    total = counts.sum()
    if total == 0:
        return np.full(len(NAMES), math.nan)
    rec = counts @ data.weights
    mgu, dgu = mgu_dgu(rec / rec.sum() - history_mass / history_mass.sum())
    tail = counts[~data.head].sum() / total
    return np.array([gini(counts), coverage(counts), tail, mgu, dgu])


def swap_masks(n: int, n_perm: int, seed: int = 0) -> np.ndarray:
    """``[n_perm, n]`` bool: which samples' two lists swap in each permutation."""
    return np.random.default_rng(seed).random((n_perm, n)) < 0.5


def seed_values(lists: Sequence[np.ndarray], data: BiasData) -> np.ndarray:
    """``[S, 5]``: the metrics of each seed's list set on all samples."""
    hist = data.history_mass.sum(axis=0)
    return np.stack([list_bias(li, hist, data) for li in lists])


def permutation_p(
    a: Sequence[np.ndarray], b: Sequence[np.ndarray], data: BiasData, masks: np.ndarray
) -> np.ndarray:
    """``[5]`` paired randomisation p-values of the seed-averaged Δ = metric(a) − metric(b)."""
    observed = (seed_values(a, data) - seed_values(b, data)).mean(axis=0)
    extreme = np.zeros(len(NAMES))
    for mask in masks:
        m = mask[:, None]
        swapped_a = [np.where(m, lb, la) for la, lb in zip(a, b, strict=True)]
        swapped_b = [np.where(m, la, lb) for la, lb in zip(a, b, strict=True)]
        delta = (seed_values(swapped_a, data) - seed_values(swapped_b, data)).mean(axis=0)
        extreme += np.abs(delta) >= np.abs(observed) - 1e-12
    return (1 + extreme) / (1 + len(masks))


def read_rows(rows: Sequence[MethodRuns]) -> dict[str, list[tuple[Path, StoredPredictions]]]:
    """Each row's predictions file of every seed, read once."""
    out = {}
    for runs in rows:
        files = [d / "predictions" / f"{runs.stem}.jsonl" for d in runs.run_dirs]
        out[runs.name] = [(f, read_predictions_jsonl(f)) for f in files]
    return out


def aligned_lists(
    preds: Sequence[tuple[Path, StoredPredictions]], data: BiasData
) -> list[np.ndarray]:
    """Each seed's top-k lists ``[n, k]``, aligned to ``data.ids``."""
    out = []
    for path, pred in preds:
        idx = align_sample_ids(data.ids, pred.sample_ids, ("the reference run", str(path)))
        out.append(top_k_lists(pred.items[idx], data.k, data.n_items, str(path)))
    return out


def _interval(per_seed: np.ndarray) -> tuple[float, float | None, float | None, float | None]:
    """(mean, std, lo, hi) over seeds; std and the t-interval only for S > 1."""
    if len(per_seed) < 2:
        return float(per_seed.mean()), None, None, None
    return seed_interval(per_seed)


def _cells(point: np.ndarray) -> dict[str, dict[str, Any]]:
    """point ``[S, 5]`` → per metric the mean, the t-interval over seeds and per-seed values."""
    out = {}
    for j, name in enumerate(NAMES):
        mean, std, lo, hi = _interval(point[:, j])
        out[name] = {"mean": mean, "std": std, "lo": lo, "hi": hi, "per_seed": point[:, j].tolist()}
    return out


def _deltas(a: np.ndarray, b: np.ndarray, p: np.ndarray) -> dict[str, dict[str, Any]]:
    """per-seed values ``a, b [S, 5]`` and p-values ``[5]`` → Δ, its interval over seeds, p."""
    out = {}
    for j, name in enumerate(NAMES):
        delta, _, lo, hi = _interval(a[:, j] - b[:, j])
        seeds_agree = lo is None or lo > 0 or hi < 0  # type: ignore[operator]
        out[name] = {"delta": delta, "lo": lo, "hi": hi, "p_value": float(p[j]),
                     "significant": bool(p[j] < 1 - LEVEL and seeds_agree)}  # fmt: skip
    return out


def build_bias_table(
    rows: Sequence[MethodRuns],
    reference: str,
    data: BiasData,
    n_perm: int = 1000,
    preds: Mapping[str, Sequence[tuple[Path, StoredPredictions]]] | None = None,
) -> dict[str, Any]:
    """The ``bias`` part of ``comparison.json``: a cell per (row, metric) and Δ vs each row's
    ``vs``. ``rows`` as for the accuracy table (same names, run directories and ``compare_to``);
    ``preds``: their files as :func:`read_rows` returns them (read here if not given)."""
    preds = read_rows(rows) if preds is None else preds
    masks = swap_masks(len(data.ids), n_perm)
    lists = {runs.name: aligned_lists(preds[runs.name], data) for runs in rows}
    values = {name: seed_values(li, data) for name, li in lists.items()}
    out = {}
    for runs in rows:
        vs = None if runs.name == reference else runs.compare_to or reference
        if vs is not None and vs not in values:
            raise DataError(f"method '{runs.name}' is compared with '{vs}', not in the table")
        delta = None
        if vs is not None:
            p = permutation_p(lists[runs.name], lists[vs], data, masks)
            delta = _deltas(values[runs.name], values[vs], p)
        out[runs.name] = {"vs": vs, "cells": _cells(values[runs.name]), "delta": delta}
    return to_jsonable({
        "k": data.k,
        "n_groups": data.weights.shape[1],
        "n_samples": len(data.ids),
        "n_seeds": len(next(iter(values.values()))),
        "n_perm": n_perm,
        "groups": POPULARITY_GROUPS_TEXT,
        "rows": out,
    })  # fmt: skip


def _cell(c: Mapping[str, Any]) -> str:
    if c["lo"] is None:
        return format_value(c["mean"])
    return format_value({"mean": c["mean"], "lo": c["lo"], "hi": c["hi"]})


def _delta(d: Mapping[str, Any]) -> str:
    star = "*" if d["significant"] else ""
    interval = "" if d["lo"] is None else f" [{d['lo']:+.4f}, {d['hi']:+.4f}]"
    return f"{d['delta']:+.4f}{interval}, p = {d['p_value']:.3g}{star}"


def bias_markdown(bias: Mapping[str, Any]) -> str:
    """Two Markdown tables: the cells, then Δ vs each row's ``vs``."""
    k, heads = bias["k"], [f"{n}@{bias['k']}" for n in NAMES]
    multi = bias["n_seeds"] > 1
    lines = [
        f"## Bias of the lists (top {k}, {bias['n_groups']} popularity groups)",
        "",
        "| method | " + " | ".join(heads) + " |",
        "|---" * (len(heads) + 1) + "|",
    ]
    for name, row in bias["rows"].items():
        lines.append(f"| {name} | " + " | ".join(_cell(row["cells"][n]) for n in NAMES) + " |")
    lines += ["", "| method | vs | " + " | ".join(f"Δ {h}" for h in heads) + " |",
              "|---" * (len(heads) + 2) + "|"]  # fmt: skip
    for name, row in bias["rows"].items():
        if row["delta"]:
            cells = " | ".join(_delta(row["delta"][n]) for n in NAMES)
            lines.append(f"| {name} | {row['vs']} | {cells} |")
    spread = (
        f"mean over {bias['n_seeds']} seeds [95% t-interval over seeds]"
        if multi
        else "one seed (no interval)"
    )
    lines += [
        "",
        f"Cells: {spread}. Δ = method − vs, averaged over seeds"
        + (" [95% t-interval over seeds of the per-seed Δ]" if multi else "")
        + f"; p: paired randomisation test over the {bias['n_samples']} test samples "
        f"({bias['n_perm']} random swaps of a sample's two lists; it holds the trained models "
        "fixed); * p < 0.05"
        + (" and the t-interval over seeds excludes 0" if multi else "")
        + ". Gini, Coverage: "
        "exposure over the catalog; Tail: share of slots outside the short head; MGU/DGU: pooled "
        "gap between the popularity-group shares of the lists and of the same samples' histories "
        f"(SPRec). {bias['groups']}",
    ]
    return "\n".join(lines) + "\n"


def bias_csv(bias: Mapping[str, Any]) -> str:
    """One line per (method, metric): the cell and the Δ vs the row's ``vs``."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["method", "metric", "mean", "lo", "hi", "vs", "delta", "delta_lo", "delta_hi",
                     "p_value"])  # fmt: skip
    for name, row in bias["rows"].items():
        for metric in NAMES:
            c, d = row["cells"][metric], (row["delta"] or {}).get(metric) or {}
            writer.writerow([name, f"{metric}@{bias['k']}", c["mean"], c["lo"], c["hi"],
                             row["vs"] or "", d.get("delta", ""), d.get("lo", ""),
                             d.get("hi", ""), d.get("p_value", "")])  # fmt: skip
    return buf.getvalue()


def comparison_bias(
    data_cfg: DataConfig,
    rows: Sequence[MethodRuns],
    reference: str,
    cfg: BiasTableConfig,
    n_perm: int,
    out_dir: Path,
) -> dict[str, Any]:
    """Build the bias table of a comparison's finished rows on its prepared data (the cached
    preparation) and write ``comparison_bias.csv``; returns the ``bias`` part of the JSON."""
    preds = read_rows(rows)
    k = bias_k(cfg, {name: min(p.items.shape[1] for _, p in ps) for name, ps in preds.items()})
    ids = np.sort(preds[reference][0][1].sample_ids)
    ds = PreparedDataset.load(prepare_dataset(data_cfg))
    data = BiasData.from_dataset(ds, ids, cfg, k)
    bias = build_bias_table(rows, reference, data, n_perm, preds)
    write_text(Path(out_dir) / "comparison_bias.csv", bias_csv(bias))
    return bias
