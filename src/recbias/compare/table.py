"""The comparison table: one row per method with HR/NDCG@K, 95% CIs, timings and paired tests.

It is built from the run directories alone (``predictions/<stem>.jsonl`` and ``metrics.json``), so
it can be rebuilt without re-running anything::

    table = build_comparison([MethodRuns("sft", [d0, d1]), ...], reference="sft", ks=[5, 10, 20])
    markdown = write_comparison(out_dir, table)   # comparison.md, comparison.csv, comparison.json

Statistics (per-sample metrics as in :mod:`recbias.metrics.ranking`; samples aligned by sample id,
different sample sets are an error):

* **One seed.** The mean over the n test samples and its 95% percentile bootstrap CI over samples
  (:func:`recbias.metrics.stats.bootstrap_ci`, ``n_boot`` resamples, seed 0).
* **S > 1 seeds.** With m_s the mean over samples of seed s: mean(m_s) ± std(m_s) (ddof 1) and the
  95% Student t-interval over seeds, mean ± t_{0.975, S−1} · std / √S. Seeds are the replicates
  whose variation the interval should cover, and a bootstrap over 2–5 seeds is degenerate. The
  JSON also keeps the bootstrap CI over samples of the seed-averaged per-sample metric
  (``sample_lo``, ``sample_hi``).
* **Paired vs the reference.** d_i = a_i − r_i on per-sample metrics averaged over seeds:
  Δ = mean(d), its 95% bootstrap CI over samples and the two-sided sign-flip p-value
  (:func:`recbias.metrics.stats.paired_comparison`); ``*`` marks p < 0.05. A row's r is the row
  named in its ``compare_to`` (``vs`` in the table): the reference decoded with the row's
  decoding settings (:mod:`recbias.compare.groups`); by default the table's reference.

Training time is ``timing.train`` of each run's ``metrics.json`` plus ``timing.sprec`` (SPRec's
self-play iterations after SFT; 0 for decode-only variants and the popularity baseline) and decoding time ``timing.recommend_<stem>``, both averaged over seeds.
"""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from recbias.errors import DataError
from recbias.evaluation.predictions import read_predictions_jsonl
from recbias.evaluation.summary import format_value, to_jsonable
from recbias.fsutil import write_json, write_text
from recbias.metrics.ranking import metric_names, per_sample_metrics, valid_ratio
from recbias.metrics.stats import align_sample_ids, bootstrap_ci, paired_comparison

LEVEL = 0.95
CI_TEXT = {
    False: "95% percentile bootstrap CI over test samples",
    True: "mean ± std over seeds [95% t-interval over seeds]",
}


@dataclass(frozen=True)
class MethodRuns:
    """One table row: the run directory of each seed and which predictions file to read."""

    name: str
    run_dirs: list[Path]
    stem: str = "llm"  # predictions/<stem>.jsonl; "popularity" for the baseline row
    reuse_model_of: str | None = None
    decoding: str = ""  # the decoding settings that differ from the reference's ("" = none)
    compare_to: str | None = None  # the row its Δ compares against (None: the reference)


@dataclass
class LoadedRuns:
    """Per-sample metrics of one method over its seeds, aligned to the reference's sample ids."""

    ids: np.ndarray  # [n] sample ids
    values: dict[str, np.ndarray] = field(default_factory=dict)  # metric → [S, n]
    valid: list[float] = field(default_factory=list)  # [S]
    train_seconds: list[float] = field(default_factory=list)  # [S]
    decode_seconds: list[float] = field(default_factory=list)  # [S]


def method_rows(
    out_dir: Path,
    methods: Sequence[tuple[str, str | None, str, str | None]],
    reference: str,
    seeds: Sequence[int],
    baseline: str = "popularity",
) -> list[MethodRuns]:
    """Rows of ``out_dir/seed-{s}/{method}`` runs: (name, reuse_model_of, decoding, compare_to)
    in order, then the baseline's predictions from the reference runs (when every seed has
    them; its decoding is "n/a")."""
    rows = [
        MethodRuns(name, [out_dir / f"seed-{s}" / name for s in seeds], "llm", *rest)
        for name, *rest in methods
    ]
    ref_dirs = [out_dir / f"seed-{s}" / reference for s in seeds]
    if all((d / "predictions" / f"{baseline}.jsonl").is_file() for d in ref_dirs):
        rows.append(MethodRuns(baseline, ref_dirs, baseline, None, "n/a"))
    return rows


def _timing(run_dir: Path, stem: str) -> tuple[float, float]:
    path = run_dir / "metrics.json"
    try:
        timing = json.loads(path.read_text(encoding="utf-8")).get("timing", {})
    except (OSError, json.JSONDecodeError) as exc:
        raise DataError(f"{path}: cannot read the run's metrics ({exc})") from None
    train = float(timing.get("train") or 0.0) + float(timing.get("sprec") or 0.0)
    train = train if stem == "llm" else 0.0
    decode = timing.get(f"recommend_{stem}")
    return train, float("nan") if decode is None else float(decode)


def load_runs(runs: MethodRuns, ks: Sequence[int], ids: np.ndarray | None = None) -> LoadedRuns:
    """Read every seed's predictions; ``ids`` fixes the sample order (default: sorted ids)."""
    if not runs.run_dirs:
        raise DataError(f"method '{runs.name}': no run directories")
    per_seed, valid, train, decode = [], [], [], []
    for run_dir in runs.run_dirs:
        path = run_dir / "predictions" / f"{runs.stem}.jsonl"
        pred = read_predictions_jsonl(path)
        ids = np.sort(pred.sample_ids) if ids is None else ids
        idx = align_sample_ids(ids, pred.sample_ids, ("the reference run", str(path)))
        per_seed.append(per_sample_metrics(pred.items[idx], pred.targets[idx], ks))
        valid.append(valid_ratio(pred.items))
        seconds = _timing(run_dir, runs.stem)
        train.append(seconds[0])
        decode.append(seconds[1])
    values = {m: np.stack([p[m] for p in per_seed]) for m in per_seed[0]}
    return LoadedRuns(ids, values, valid, train, decode)


def seed_interval(per_seed: np.ndarray, level: float = LEVEL) -> tuple[float, float, float, float]:
    """(mean, std, lo, hi) over seeds: std with ddof 1, Student t-interval. per_seed: [S], S ≥ 2."""
    from scipy import stats

    per_seed = np.asarray(per_seed, dtype=np.float64)
    s = len(per_seed)
    mean, std = float(per_seed.mean()), float(per_seed.std(ddof=1))
    half = float(stats.t.ppf((1 + level) / 2, s - 1)) * std / math.sqrt(s)
    return mean, std, mean - half, mean + half


def metric_summary(values: np.ndarray, n_boot: int) -> dict[str, Any]:
    """One cell: values [S, n] per seed and sample → mean, std, lo, hi, per_seed, sample CI."""
    ci = bootstrap_ci(values.mean(axis=0), n_boot=n_boot, alpha=1 - LEVEL, seed=0)
    per_seed = values.mean(axis=1)
    out = {
        "mean": ci.mean,
        "std": None,
        "lo": ci.lo,
        "hi": ci.hi,
        "per_seed": per_seed.tolist(),
        "sample_lo": ci.lo,
        "sample_hi": ci.hi,
    }
    if len(per_seed) > 1:
        out["mean"], out["std"], out["lo"], out["hi"] = seed_interval(per_seed)
    return out


def _row(
    runs: MethodRuns, data: LoadedRuns, ref: LoadedRuns | None, vs: str | None, n_boot: int
) -> dict:
    paired = None
    if ref is not None:
        paired = {
            m: dict(paired_comparison(v.mean(axis=0), ref.values[m].mean(axis=0), n_boot, 0))
            for m, v in data.values.items()
        }
    return {
        "runs": [str(d) for d in runs.run_dirs],
        "predictions": runs.stem,
        "reuse_model_of": runs.reuse_model_of,
        "decoding": runs.decoding,
        "vs": vs,
        "metrics": {m: metric_summary(v, n_boot) for m, v in data.values.items()},
        "valid_ratio": float(np.mean(data.valid)),
        "train_seconds": float(np.mean(data.train_seconds)),
        "decode_seconds": float(np.mean(data.decode_seconds)),
        "paired_vs_reference": paired,
    }


def build_comparison(
    methods: Sequence[MethodRuns],
    reference: str,
    ks: Sequence[int] = (5, 10, 20),
    paired_metric: str = "NDCG@10",
    n_boot: int = 1000,
    meta: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The content of ``comparison.json`` (plain JSON values; NaN becomes null)."""
    by_name = {m.name: m for m in methods}
    if reference not in by_name:
        raise DataError(f"reference method '{reference}' is not among {list(by_name)}")
    seeds = {len(m.run_dirs) for m in methods}
    if len(seeds) != 1:
        raise DataError("every method needs one run directory per seed")
    ref = load_runs(by_name[reference], ks)
    loaded = {m.name: ref if m.name == reference else load_runs(m, ks, ref.ids) for m in methods}
    rows = {}
    for m in methods:
        vs = None if m.name == reference else m.compare_to or reference
        if vs is not None and vs not in loaded:
            raise DataError(f"method '{m.name}' is compared with '{vs}', which is not in the table")
        rows[m.name] = _row(m, loaded[m.name], loaded.get(vs) if vs else None, vs, n_boot)
    n_seeds = seeds.pop()
    table = {
        **(meta or {}),
        "reference": reference,
        "ks": list(ks),
        "paired_metric": paired_metric,
        "n_samples": len(ref.ids),
        "n_seeds": n_seeds,
        "ci": CI_TEXT[n_seeds > 1],
        "methods": rows,
    }
    return to_jsonable(table)


def _metric_cell(m: Mapping[str, Any], multi: bool) -> str:
    if m.get("mean") is None:
        return "—"
    if multi:
        return f"{m['mean']:.4f} ± {m['std']:.4f} [{m['lo']:.4f}, {m['hi']:.4f}]"
    return format_value({"mean": m["mean"], "lo": m["lo"], "hi": m["hi"]})


def _seconds(value: float | None) -> str:
    return "—" if value is None else f"{value:.1f}"


def _paired_cells(row: Mapping[str, Any], metric: str) -> list[str]:
    paired = row.get("paired_vs_reference")
    if not paired:
        return ["(reference)", "—", "—"]
    c = paired[metric]
    mark = " *" if c["p_value"] < 1 - LEVEL else ""
    diff = f"{c['diff']:+.4f} [{c['lo']:+.4f}, {c['hi']:+.4f}]"
    return [diff, str(row.get("vs") or ""), f"{c['p_value']:.3g}{mark}"]


def _decoding_cell(row: Mapping[str, Any], ref: str) -> str:
    return row.get("decoding") or f"as {ref}"


def comparison_markdown(table: Mapping[str, Any]) -> str:
    """The Markdown table of a ``build_comparison`` result, with a legend."""
    metrics, pm, ref = metric_names(table["ks"]), table["paired_metric"], table["reference"]
    multi = table["n_seeds"] > 1
    header = ["method", "decoding", *metrics, "valid", "train s", "decode s"]
    header += [f"Δ {pm} [95% CI]", "vs", "p"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for name, row in table["methods"].items():
        label = f"{name} (model of {row['reuse_model_of']})" if row["reuse_model_of"] else name
        cells = [label, _decoding_cell(row, ref)]
        cells += [_metric_cell(row["metrics"][m], multi) for m in metrics]
        cells += [f"{row['valid_ratio']:.4f}", _seconds(row["train_seconds"])]
        cells += [_seconds(row["decode_seconds"]), *_paired_cells(row, pm)]
        lines.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
    seeds = ", ".join(str(s) for s in table.get("seeds", [])) or str(table["n_seeds"])
    notes = [
        f"# {table.get('name', 'comparison')}",
        "",
        f"{table['n_samples']} test samples; seeds: {seeds}; cells: {table['ci']}.",
        "",
        *lines,
        "",
        f"Δ = method − vs on per-sample {pm} (averaged over seeds), 95% bootstrap CI over "
        "samples; p: two-sided paired sign-flip test; * p < 0.05. decoding: the decoding "
        f"settings (decode.candidates, decode.beam) that differ from {ref}'s. A method is "
        f"compared with {ref}'s model decoded with its own settings (a row {ref}@<settings>, "
        f"decode-only, or a method that is exactly that), and that row with {ref}: the effect of "
        "the decoding settings alone. Times in seconds (mean over seeds); train s leaves out "
        "the validation decoding after each epoch.",
    ]
    return "\n".join(notes) + "\n"


def _csv_row(name: str, row: Mapping[str, Any], metrics: list[str], pm: str) -> list[Any]:
    out: list[Any] = [name, row.get("decoding", ""), row["reuse_model_of"], len(row["runs"])]
    for m in metrics:
        cell = row["metrics"][m]
        out += [cell["mean"], cell["std"], cell["lo"], cell["hi"]]
    out += [row["valid_ratio"], row["train_seconds"], row["decode_seconds"]]
    c = (row.get("paired_vs_reference") or {}).get(pm)
    if c is None:
        return [*out, None, None, None, None, None, None]
    sig = c["p_value"] < 1 - LEVEL
    return [*out, row.get("vs"), c["diff"], c["lo"], c["hi"], c["p_value"], sig]


def comparison_csv(table: Mapping[str, Any]) -> str:
    """One CSV row per method; empty cells for undefined values (std of one seed, Δ of the ref)."""
    metrics, pm = metric_names(table["ks"]), table["paired_metric"]
    header = ["method", "decoding", "reuse_model_of", "n_seeds"]
    for m in metrics:
        header += [m, f"{m}_std", f"{m}_lo", f"{m}_hi"]
    header += ["valid_ratio", "train_seconds", "decode_seconds"]
    header += ["vs", f"diff_{pm}", "diff_lo", "diff_hi", "p_value", "significant"]
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(header)
    for name, row in table["methods"].items():
        writer.writerow(["" if v is None else v for v in _csv_row(name, row, metrics, pm)])
    return buf.getvalue()


def write_comparison(out_dir: Path, table: Mapping[str, Any], extra_markdown: str = "") -> str:
    """Write comparison.json, comparison.md (+ ``extra_markdown``, e.g. the bias table) and
    comparison.csv atomically; return the Markdown."""
    out_dir = Path(out_dir)
    markdown = comparison_markdown(table) + (f"\n{extra_markdown}" if extra_markdown else "")
    write_json(out_dir / "comparison.json", table)
    write_text(out_dir / "comparison.md", markdown)
    write_text(out_dir / "comparison.csv", comparison_csv(table))
    return markdown
