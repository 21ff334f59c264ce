"""``recbias report``: run directories → one HTML file, Markdown, and CSV + LaTeX per table.

    paths = build_report([Path("runs/sft"), Path("runs/gdrt")], Path("report"), title="SFT vs GDRT")
    paths.html        # report/report.html: self-contained (inline CSS, figures as data URIs)
    paths.markdown    # report/report.md, figures linked from report/figures/*.png
    paths.csv, paths.latex   # report/tables/<section>-<table>.csv|.tex

The output directory is built in a temporary sibling and swapped into place only when complete, so
a failure leaves the previous report (or nothing) behind. An existing output directory is replaced
only if it holds a previous report.
"""

from __future__ import annotations

import logging
import shutil
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from recbias.errors import DataError
from recbias.fsutil import atomic_dir
from recbias.report.accuracy import MethodScores, cross_run_accuracy
from recbias.report.collect import check_run_dir, collect_run
from recbias.report.document import Anchors, Entry, Report
from recbias.report.format import slugify
from recbias.report.html import render_html
from recbias.report.sections import Figure
from recbias.report.text import render_markdown, table_csv, table_latex

log = logging.getLogger(__name__)

HTML_NAME, MARKDOWN_NAME = "report.html", "report.md"


@dataclass
class ReportPaths:
    """Where the report's files are, once written."""

    out_dir: Path
    html: Path
    markdown: Path
    figures: list[Path] = field(default_factory=list)
    csv: list[Path] = field(default_factory=list)
    latex: list[Path] = field(default_factory=list)


def _check_out_dir(out_dir: Path, run_dirs: Sequence[Path]) -> None:
    out = out_dir.resolve()
    for run_dir in run_dirs:
        run = run_dir.resolve()
        if out == run or out in run.parents:
            raise DataError(f"--out {out_dir}: would replace the run directory {run_dir}")
    if out_dir.is_file():
        raise DataError(f"--out {out_dir}: is a file, expected a directory")
    if out_dir.is_dir() and any(out_dir.iterdir()) and not (out_dir / HTML_NAME).is_file():
        raise DataError(
            f"--out {out_dir}: exists and is not a recbias report (no {HTML_NAME}); "
            "choose a new or empty directory"
        )


def _labels(run_dirs: Sequence[Path]) -> list[str]:
    """Directory names, with the parent prepended where names collide (seed-0/sft, seed-1/sft)."""
    names = [d.resolve().name for d in run_dirs]
    return [
        f"{d.resolve().parent.name}/{n}" if names.count(n) > 1 else n
        for d, n in zip(run_dirs, names, strict=True)
    ]


def _localize(entry: Entry, root: Path, fig_dir: Path) -> list[Path]:
    """Copy the entry's figures into ``fig_dir`` and point the section at the copies."""
    out = []
    for i, fig in enumerate(entry.section.figures):
        src = entry.figure_path(i)
        dest = (
            src
            if src.parent == fig_dir.resolve()
            else fig_dir / f"{entry.anchor}-{i + 1}{src.suffix}"
        )
        if dest != src:
            fig_dir.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(src, dest)
        entry.section.figures[i] = Figure(f"{fig_dir.name}/{dest.name}", fig.caption)
        out.append(dest)
    entry.base = root
    return out


def _write_tables(entry: Entry, table_dir: Path) -> list[tuple[Path, Path]]:
    out = []
    for table in entry.section.tables:
        stem = f"{entry.anchor}-{slugify(table.name)}"
        table_dir.mkdir(parents=True, exist_ok=True)
        (table_dir / f"{stem}.csv").write_text(table_csv(table), encoding="utf-8")
        (table_dir / f"{stem}.tex").write_text(table_latex(table, stem), encoding="utf-8")
        out.append((table_dir / f"{stem}.csv", table_dir / f"{stem}.tex"))
    return out


def collect_report(run_dirs: Sequence[Path], fig_dir: Path, title: str | None = None) -> Report:
    """Read every run directory into a :class:`Report` (generated figures go to ``fig_dir``)."""
    anchors = Anchors()
    anchors("contents")
    labels = _labels(run_dirs)
    report = Report(title or "recbias report: " + ", ".join(labels))
    scores: dict[str, list[MethodScores]] = {}
    for run_dir, label in zip(run_dirs, labels, strict=True):
        part, scores[label] = collect_run(run_dir, label, anchors, fig_dir)
        report.parts.append(part)
    anchor = anchors("overview", "accuracy")
    cross = cross_run_accuracy(scores, anchor, fig_dir)
    if cross is not None:
        report.overview.append(Entry(anchor, cross, fig_dir))
    return report


def _relocate(paths: list[Path], tmp: Path, out_dir: Path) -> list[Path]:
    return [out_dir / p.relative_to(tmp) for p in paths]


def build_report(run_dirs: list[Path], out_dir: Path, title: str | None = None) -> ReportPaths:
    """Write ``report.html``, ``report.md``, ``figures/`` and ``tables/`` into ``out_dir``."""
    run_dirs, out_dir = [Path(d) for d in run_dirs], Path(out_dir)
    if not run_dirs:
        raise DataError("recbias report: expected at least one run directory")
    for run_dir in run_dirs:
        check_run_dir(run_dir)
    _check_out_dir(out_dir, run_dirs)
    with atomic_dir(out_dir) as tmp_dir:
        tmp = tmp_dir.resolve()
        tmp.chmod(0o755)  # mkdtemp makes it private; a report is meant to be read
        fig_dir = tmp / "figures"
        report = collect_report(run_dirs, fig_dir, title)
        figures, tables = [], []
        for entry in report.entries():
            figures += _localize(entry, tmp, fig_dir)
            tables += _write_tables(entry, tmp / "tables")
        (tmp / HTML_NAME).write_text(render_html(report), encoding="utf-8")
        (tmp / MARKDOWN_NAME).write_text(render_markdown(report), encoding="utf-8")
        paths = ReportPaths(
            out_dir,
            out_dir / HTML_NAME,
            out_dir / MARKDOWN_NAME,
            _relocate(figures, tmp, out_dir),
            _relocate([c for c, _ in tables], tmp, out_dir),
            _relocate([t for _, t in tables], tmp, out_dir),
        )
    log.info("report written to %s (%d figures, %d tables)", out_dir, len(figures), len(tables))
    return paths
