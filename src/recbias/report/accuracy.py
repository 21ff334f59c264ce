"""Accuracy sections: HR/NDCG@K with 95% CIs, paired tests and a forest plot per run.

    section, scores = run_accuracy(read_json(run / "metrics.json"), run / "metrics.json", "a", figs)
    section, scores = comparison_accuracy(read_json(cmp / "comparison.json"), ..., "b", figs)
    section = cross_run_accuracy({"sft": scores_a, "cmp": scores_b}, "overview", figs)

Each table holds one metric family (HR@K, NDCG@K, ...: the part of the name before ``@``), so that
a run evaluated at five cut-offs still fits the page; the other columns (valid ratio, list length,
times, the paired test) go with the last family, or with the paired metric's family in a
comparison.

Inputs are the files written by ``recbias run`` (``metrics.json``: ``metrics.methods.<name>.
<metric> = {mean, lo, hi}`` and ``metrics.paired_vs_<ref>.<name>.<metric>``) and ``recbias compare``
(``comparison.json``, see :mod:`recbias.compare.table`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from recbias.errors import DataError
from recbias.report.figures import Interval, forest_plot
from recbias.report.format import fmt_ci, fmt_number
from recbias.report.inputs import need, number
from recbias.report.sections import Figure, Section, Table

FOREST_METRIC = "NDCG@10"
_EXTRAS = {"valid_ratio": "valid", "list_length": "k", "n": "n"}
FOREST_CAPTION = "{metric} per method (dot) with its 95% CI (bar; {ci}). "
REFERENCE_NOTE = (
    "Look for bars that lie clear of the dashed line ({ref}'s mean); overlapping bars alone do "
    "not settle a difference — the paired test in the table does."
)
NO_REFERENCE_NOTE = (
    "Look for bars that do not overlap; rows on different test samples are not paired, so "
    "compare only the size of the gaps."
)


@dataclass
class MethodScores:
    """One accuracy row: metric → (mean, lo, hi), and the number of test samples if known."""

    label: str
    cis: dict[str, tuple[float | None, float | None, float | None]] = field(default_factory=dict)
    n: int | None = None


def _ci(cell: Any, where: str) -> tuple[float | None, float | None, float | None]:
    if not isinstance(cell, Mapping) or "mean" not in cell:
        raise DataError(f"{where}: expected {{mean, lo, hi}}, got {cell!r}")
    return number(cell.get("mean")), number(cell.get("lo")), number(cell.get("hi"))


def _forest_metric(scores: Sequence[MethodScores], preferred: str = FOREST_METRIC) -> str | None:
    names = [m for m in scores[0].cis if all(m in s.cis for s in scores)] if scores else []
    if preferred in names:
        return preferred
    ndcg = [m for m in names if m.startswith("NDCG@")]
    candidates = ndcg or names
    return candidates[0] if candidates else None


def forest_figure(
    scores: Sequence[MethodScores], path: Path, ci: str, reference: str | None = None
) -> Figure | None:
    metric = _forest_metric(scores)
    if metric is None:
        return None
    rows = [Interval(s.label, *s.cis[metric]) for s in scores if s.cis[metric][0] is not None]
    if not rows:
        return None
    forest_plot(rows, metric, path, reference)
    has_ref = any(r.label == reference for r in rows)
    note = REFERENCE_NOTE.format(ref=reference) if has_ref else NO_REFERENCE_NOTE
    return Figure(str(path), FOREST_CAPTION.format(metric=metric, ci=ci) + note)


def metric_families(names: Sequence[str]) -> list[list[str]]:
    """Metric names grouped by the part before ``@``, in order of first appearance.

    ``["HR@5", "NDCG@5", "HR@10"]`` -> ``[["HR@5", "HR@10"], ["NDCG@5"]]``.
    """
    groups: dict[str, list[str]] = {}
    for name in names:
        groups.setdefault(name.split("@", 1)[0], []).append(name)
    return list(groups.values())


def family_tables(
    name: str,
    caption: str,
    label: str,
    rows: Sequence[tuple[Mapping[str, Any], list[Any]]],
    metrics: Sequence[str],
    extra_columns: Sequence[str] = (),
    extra_family: str | None = None,
) -> list[Table]:
    """One table per metric family of ``metrics``: ``label`` + that family's cells.

    ``rows`` are ``(cells by metric name incl. the label, extra cells)``; the extra columns go to
    the family of metric ``extra_family`` (the last family when it is None or absent). A table's
    name is ``name`` + ``_`` + the family in lower case; the caption starts with the family.
    """
    families = metric_families(metrics) or [[]]
    with_extra = next((i for i, f in enumerate(families) if extra_family in f), len(families) - 1)
    tables = []
    for i, family in enumerate(families):
        head = family[0].split("@", 1)[0] if family else "metrics"
        extra = i == with_extra
        cells = [[r[label], *(r.get(m) for m in family), *(e if extra else [])] for r, e in rows]
        columns = [label, *family, *(extra_columns if extra else [])]
        slug = "".join(c if c.isalnum() else "_" for c in head.lower())
        tables.append(Table(f"{name}_{slug}", f"{head}@K. {caption}", columns, cells))
    return tables


def _method_scores(name: str, row: Any, where: str) -> MethodScores:
    if not isinstance(row, Mapping):
        raise DataError(f"{where}: expected an object of metrics")
    cis = {m: _ci(v, f"{where}.{m}") for m, v in row.items() if isinstance(v, Mapping)}
    n = row.get("n")
    return MethodScores(name, cis, int(n) if isinstance(n, int) else None)


def _paired_rows(metrics: Mapping[str, Any]) -> list[list[Any]]:
    rows = []
    for key, by_method in metrics.items():
        if not key.startswith("paired_vs_") or not isinstance(by_method, Mapping):
            continue
        ref = key.removeprefix("paired_vs_")
        for other, comps in by_method.items():
            for metric, c in comps.items():
                diff = fmt_ci(c.get("diff"), c.get("lo"), c.get("hi"), signed=True)
                wins = [c.get("a_better"), c.get("b_better"), c.get("ties")]
                rows.append([f"{ref} − {other}", metric, diff, c.get("p_value"), *wins])
    return rows


def run_accuracy(
    doc: Any, path: Path, anchor: str, fig_dir: Path
) -> tuple[Section, list[MethodScores]]:
    """The accuracy section of a run's ``metrics.json``."""
    metrics = need(doc, "metrics", dict, str(path))
    if "methods" not in metrics and "method" in doc:  # one recommender (recbias genrec)
        metrics = {"methods": {str(doc["method"]): metrics}}
    methods = need(metrics, "methods", dict, f"{path}: metrics")
    scores = [_method_scores(n, r, f"{path}: metrics.methods.{n}") for n, r in methods.items()]
    names = list(dict.fromkeys(m for s in scores for m in s.cis))
    extras = [e for e in _EXTRAS if any(e in r for r in methods.values())]
    rows = [
        (
            {"method": s.label} | {m: fmt_ci(*s.cis[m]) for m in s.cis},
            [methods[s.label].get(e) for e in extras],
        )
        for s in scores
    ]
    caption = "Accuracy on the test samples: mean [95% percentile bootstrap CI over samples]."
    tables = family_tables("accuracy", caption, "method", rows, names, [_EXTRAS[e] for e in extras])
    section = Section("accuracy", "Accuracy", tables=tables)
    n = scores[0].n if scores else None
    section.summary = f"Dataset {doc.get('dataset', '?')}; {fmt_number(n)} test samples."
    paired = _paired_rows(metrics)
    if paired:
        cols = ["comparison", "metric", "Δ [95% CI]", "p", "a better", "b better", "ties"]
        caption = "Paired tests on the same samples: Δ = a − b, 95% bootstrap CI, sign-flip p."
        section.tables.append(Table("paired", caption, cols, paired))
    ci = "bootstrap over test samples"
    refs = [k.removeprefix("paired_vs_") for k in metrics if k.startswith("paired_vs_")]
    reference = refs[0] if refs else None
    figure = forest_figure(scores, fig_dir / f"{anchor}.png", ci, reference)
    section.figures += [figure] if figure else []
    return section, scores


def _comparison_scores(table: Mapping[str, Any], path: Path) -> list[MethodScores]:
    methods = need(table, "methods", dict, str(path))
    n = table.get("n_samples")
    out = []
    for name, row in methods.items():
        where = f"{path}: methods.{name}"
        metrics = need(row, "metrics", dict, where)
        cis = {m: _ci(c, f"{where}.metrics.{m}") for m, c in metrics.items()}
        out.append(MethodScores(name, cis, int(n) if isinstance(n, int) else None))
    return out


def _comparison_cell(cell: Mapping[str, Any]) -> str:
    text = fmt_ci(cell.get("mean"), cell.get("lo"), cell.get("hi"))
    std = number(cell.get("std"))
    if std is None or text == "—":
        return text
    head, _, rest = text.partition(" ")
    return f"{head} ± {fmt_number(std)} {rest}"


def _comparison_row(
    name: str, row: Mapping[str, Any], metrics: list[str], pm: str, ref: str
) -> tuple[dict[str, Any], list[Any]]:
    """(cells by metric name and "method", [valid, train s, decode s, Δ, vs, p])."""
    notes = [f"model of {row['reuse_model_of']}"] if row.get("reuse_model_of") else []
    if row.get("decoding") and row["decoding"] != "n/a":
        notes.append(f"decoding {row['decoding']}")
    label = f"{name} ({'; '.join(notes)})" if notes else name
    cells = {"method": label} | {m: _comparison_cell(row["metrics"].get(m, {})) for m in metrics}
    extra = [row.get("valid_ratio"), row.get("train_seconds"), row.get("decode_seconds")]
    paired = (row.get("paired_vs_reference") or {}).get(pm)
    if not paired:
        return cells, [*extra, "(reference)", None, None]
    diff = fmt_ci(paired.get("diff"), paired.get("lo"), paired.get("hi"), signed=True)
    p = paired.get("p_value")
    mark = " *" if isinstance(p, float | int) and p < 0.05 else ""
    vs = row.get("vs") or ref  # comparisons written before decoding groups: the reference
    return cells, [*extra, diff, vs, f"{fmt_number(p)}{mark}" if p is not None else None]


def comparison_accuracy(
    table: Any, path: Path, anchor: str, fig_dir: Path
) -> tuple[Section, list[MethodScores]]:
    """The accuracy section of a ``recbias compare`` directory's ``comparison.json``."""
    scores = _comparison_scores(table, path)
    ref, pm = str(table.get("reference", "")), str(table.get("paired_metric", FOREST_METRIC))
    metrics = list(dict.fromkeys(m for s in scores for m in s.cis))
    extra = ["valid", "train s", "decode s", f"Δ {pm} [95% CI]", "vs", "p"]
    ci = str(table.get("ci", "95% CI"))
    rows = [_comparison_row(n, r, metrics, pm, ref) for n, r in table["methods"].items()]
    caption = f"Accuracy per method; cells: {ci}. * p < 0.05 (paired sign-flip test)."
    tables = family_tables("accuracy", caption, "method", rows, metrics, extra, pm)
    section = Section("accuracy", "Accuracy", tables=tables)
    seeds = ", ".join(str(s) for s in table.get("seeds", [])) or str(table.get("n_seeds", "?"))
    section.summary = (
        f"{fmt_number(table.get('n_samples'))} test samples; seeds: {seeds}. Δ = method − vs on "
        f"per-sample {pm}, vs = {ref} decoded with the method's decoding settings (a row "
        f"{ref}@<settings>), and that row against {ref}; training and decoding times in seconds."
    )
    figure = forest_figure(scores, fig_dir / f"{anchor}.png", ci, reference=ref)
    section.figures += [figure] if figure else []
    return section, scores


def cross_run_accuracy(
    runs: Mapping[str, Sequence[MethodScores]], anchor: str, fig_dir: Path
) -> Section | None:
    """One table over runs (rows ``run / method``) on the metrics they all share, or None."""
    rows = [MethodScores(f"{run} / {s.label}", s.cis, s.n) for run, ss in runs.items() for s in ss]
    if len([r for r in runs.values() if r]) < 2:
        return None
    shared = [m for m in rows[0].cis if all(m in r.cis for r in rows)]
    if not shared:
        return None
    cells = [
        ({"run / method": r.label} | {m: fmt_ci(*r.cis[m]) for m in shared}, [r.n]) for r in rows
    ]
    caption = "Accuracy of every run on the metrics all runs report: mean [95% CI]."
    tables = family_tables("cross_run_accuracy", caption, "run / method", cells, shared, ["n"])
    summary = (
        "Runs evaluated on different test samples (see n) are not paired; compare their "
        "intervals, not their means alone."
    )
    section = Section("cross-run", "Accuracy across runs", summary, tables=tables)
    figure = forest_figure(rows, fig_dir / f"{anchor}.png", "as reported by each run")
    section.figures += [figure] if figure else []
    return section
