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

These are set-level metrics (one number per list set), so intervals come from resampling test
samples: B resamples of the n sample ids (seed 0, the same draws for every row and seed), each
metric recomputed on each resample. A cell is the mean over seeds with, for S > 1 seeds, the
Student t-interval over seeds (as the accuracy table), else the percentile bootstrap interval.
Δ vs the row's ``vs`` (the accuracy table's reference or decoding-group reference) is the
seed-averaged difference with the 95% percentile interval of the paired resampled differences
(same draws on both sides); ``*`` marks an interval that excludes 0.
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
from recbias.evaluation.predictions import read_predictions_jsonl
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


def draws(n: int, n_boot: int, seed: int = 0) -> np.ndarray:
    """``[n_boot, n]`` resampled sample indices, the same for every row and seed."""
    return np.random.default_rng(seed).integers(0, n, size=(n_boot, n))


def row_values(lists: np.ndarray, data: BiasData, idx: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """One seed's list set: (``[5]`` on all samples, ``[B, 5]`` on each resample)."""
    point = list_bias(lists, data.history_mass.sum(axis=0), data)
    boot = np.stack([list_bias(lists[r], data.history_mass[r].sum(axis=0), data) for r in idx])
    return point, boot


def load_lists(runs: MethodRuns, data: BiasData) -> list[np.ndarray]:
    """Each seed's top-k lists ``[n, k]`` of ``runs``, aligned to ``data.ids``."""
    out = []
    for run_dir in runs.run_dirs:
        path = run_dir / "predictions" / f"{runs.stem}.jsonl"
        pred = read_predictions_jsonl(path)
        idx = align_sample_ids(data.ids, pred.sample_ids, ("the reference run", str(path)))
        out.append(top_k_lists(pred.items[idx], data.k, data.n_items, str(path)))
    return out


def _percentiles(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    tail = 100 * (1 - LEVEL) / 2
    return np.nanpercentile(values, tail, axis=0), np.nanpercentile(values, 100 - tail, axis=0)


def _cells(point: np.ndarray, boot: np.ndarray) -> dict[str, dict[str, Any]]:
    """point ``[S, 5]``, boot ``[S, B, 5]`` → per metric mean, interval, per-seed values."""
    sample_lo, sample_hi = _percentiles(boot.mean(axis=0))
    out = {}
    for j, name in enumerate(NAMES):
        cell = {"mean": float(point[:, j].mean()), "std": None,
                "lo": float(sample_lo[j]), "hi": float(sample_hi[j]),
                "per_seed": point[:, j].tolist(),
                "sample_lo": float(sample_lo[j]), "sample_hi": float(sample_hi[j])}  # fmt: skip
        if len(point) > 1:
            cell["mean"], cell["std"], cell["lo"], cell["hi"] = seed_interval(point[:, j])
        out[name] = cell
    return out


def _deltas(a: tuple[np.ndarray, np.ndarray], b: tuple[np.ndarray, np.ndarray]) -> dict:
    diff_point = (a[0] - b[0]).mean(axis=0)
    lo, hi = _percentiles((a[1] - b[1]).mean(axis=0))
    return {name: {"delta": float(diff_point[j]), "lo": float(lo[j]), "hi": float(hi[j]),
                   "excludes_0": bool(lo[j] > 0 or hi[j] < 0)}
            for j, name in enumerate(NAMES)}  # fmt: skip


def build_bias_table(
    rows: Sequence[MethodRuns],
    reference: str,
    data: BiasData,
    n_boot: int = 1000,
) -> dict[str, Any]:
    """The ``bias`` part of ``comparison.json``: a cell per (row, metric) and Δ vs each row's
    ``vs``. ``rows`` as for the accuracy table (same names, run directories and ``compare_to``)."""
    idx = draws(len(data.ids), n_boot)
    values = {}
    for runs in rows:
        per_seed = [row_values(lists, data, idx) for lists in load_lists(runs, data)]
        values[runs.name] = (np.stack([p for p, _ in per_seed]), np.stack([b for _, b in per_seed]))
    out = {}
    for runs in rows:
        vs = None if runs.name == reference else runs.compare_to or reference
        if vs is not None and vs not in values:
            raise DataError(f"method '{runs.name}' is compared with '{vs}', not in the table")
        out[runs.name] = {
            "vs": vs,
            "cells": _cells(*values[runs.name]),
            "delta": _deltas(values[runs.name], values[vs]) if vs else None,
        }
    return to_jsonable({
        "k": data.k,
        "n_groups": data.weights.shape[1],
        "n_samples": len(data.ids),
        "n_boot": n_boot,
        "groups": POPULARITY_GROUPS_TEXT,
        "rows": out,
    })  # fmt: skip


def _cell(c: Mapping[str, Any]) -> str:
    return format_value({"mean": c["mean"], "lo": c["lo"], "hi": c["hi"]})


def _delta(d: Mapping[str, Any] | None) -> str:
    if not d:
        return "—"
    star = "*" if d["excludes_0"] else ""
    return f"{d['delta']:+.4f} [{d['lo']:+.4f}, {d['hi']:+.4f}]{star}"


def bias_markdown(bias: Mapping[str, Any], n_seeds: int) -> str:
    """Two Markdown tables: the cells, then Δ vs each row's ``vs``."""
    k, heads = bias["k"], [f"{n}@{bias['k']}" for n in NAMES]
    ci = "95% t-interval over seeds" if n_seeds > 1 else "95% bootstrap CI over samples"
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
    lines += [
        "",
        f"Cells: mean [{ci}]. Δ = method − vs, averaged over seeds, with the 95% interval of "
        f"{bias['n_boot']} paired resamples of the {bias['n_samples']} test samples; * the "
        "interval excludes 0. Gini, Coverage: exposure over the catalog; Tail: share of slots "
        "outside the short head; MGU/DGU: pooled gap between the popularity-group shares of "
        f"the lists and of the same samples' histories (SPRec). {bias['groups']}",
    ]
    return "\n".join(lines) + "\n"


def bias_csv(bias: Mapping[str, Any]) -> str:
    """One line per (method, metric): the cell and the Δ vs the row's ``vs``."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["method", "metric", "mean", "lo", "hi", "vs", "delta", "delta_lo", "delta_hi"])
    for name, row in bias["rows"].items():
        for metric in NAMES:
            c, d = row["cells"][metric], (row["delta"] or {}).get(metric) or {}
            writer.writerow([name, f"{metric}@{bias['k']}", c["mean"], c["lo"], c["hi"],
                             row["vs"] or "", d.get("delta", ""), d.get("lo", ""),
                             d.get("hi", "")])  # fmt: skip
    return buf.getvalue()


def comparison_bias(
    data_cfg: DataConfig,
    rows: Sequence[MethodRuns],
    reference: str,
    cfg: BiasTableConfig,
    n_boot: int,
    out_dir: Path,
) -> dict[str, Any]:
    """Build the bias table of a comparison's finished rows on its prepared data (the cached
    preparation) and write ``comparison_bias.csv``; returns the ``bias`` part of the JSON."""
    widths = {}
    for runs in rows:
        files = [d / "predictions" / f"{runs.stem}.jsonl" for d in runs.run_dirs]
        widths[runs.name] = min(read_predictions_jsonl(f).items.shape[1] for f in files)
    k = bias_k(cfg, widths)
    ref = next(r for r in rows if r.name == reference)
    first = ref.run_dirs[0] / "predictions" / f"{ref.stem}.jsonl"
    ids = np.sort(read_predictions_jsonl(first).sample_ids)
    ds = PreparedDataset.load(prepare_dataset(data_cfg))
    bias = build_bias_table(rows, reference, BiasData.from_dataset(ds, ids, cfg, k), n_boot)
    write_text(Path(out_dir) / "comparison_bias.csv", bias_csv(bias))
    return bias
