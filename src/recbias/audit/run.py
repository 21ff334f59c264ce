"""``run_audit``: every selected analysis of a run, written atomically to ``RUN/audit/``.

Under torchrun every rank runs every analysis (the decoding passes of attribution, sensitivity and
curves are sharded across ranks) and rank 0 alone writes.

out = run_audit(Path("runs/quickstart"), AuditConfig(), progress=print)
meta, sections = load_sections(out / "audit.json")
headline(sections)          # [(label, value)] of the headline numbers
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import recbias.audit.analyses as analyses
from recbias import distributed
from recbias.audit.config import AuditConfig
from recbias.audit.context import AuditContext
from recbias.audit.curves import curves
from recbias.config import to_dict
from recbias.errors import DataError
from recbias.fsutil import atomic_dir
from recbias.report.sections import Section, Table, save_sections
from recbias.runs import git_commit, package_versions

log = logging.getLogger(__name__)
AUDIT_FILE = "audit.json"
Progress = Callable[[str], None]

RUNNERS: dict[str, analyses.Analysis] = {
    "fairness": analyses.fairness,
    "attribution": analyses.attribution,
    "cooccurrence": analyses.cooccurrence,
    "token_ig": analyses.token_ig,
    "curves": curves,
    "sensitivity": analyses.sensitivity,
    "positional": analyses.positional,
}


def check_out_dir(out_dir: Path, run_dir: Path) -> None:
    """Refuse to replace the run itself or a directory that is not a previous audit."""
    out, run = out_dir.resolve(), run_dir.resolve()
    if out == run or out in run.parents:
        raise DataError(f"--out {out_dir}: would replace the run directory {run_dir}")
    if out_dir.is_file():
        raise DataError(f"--out {out_dir}: is a file, expected a directory")
    if out_dir.is_dir() and any(out_dir.iterdir()) and not (out_dir / AUDIT_FILE).is_file():
        raise DataError(
            f"--out {out_dir}: exists and is not a recbias audit (no {AUDIT_FILE}); "
            "choose a new or empty directory"
        )


def run_audit(
    run_dir: Path,
    cfg: AuditConfig,
    out_dir: Path | None = None,
    progress: Progress | None = None,
) -> Path:
    """Run the selected analyses of ``run_dir``; return the audit directory (``audit.json``,
    ``figures/``, ``data/``). Nothing is left behind if an analysis fails."""
    run_dir = Path(run_dir)
    out_dir = Path(out_dir) if out_dir is not None else run_dir / "audit"
    cfg.validate()
    ctx = AuditContext.open(run_dir, cfg)
    check_out_dir(out_dir, run_dir)
    distributed.barrier()  # every rank checked before rank 0 replaces it
    timings: dict[str, float] = {}
    sections: list[Section] = []
    with _output(out_dir) as tmp:
        tmp.chmod(0o755)  # mkdtemp makes it private; an audit is meant to be read
        for name in cfg.selected():
            if progress is not None:
                progress(name)
            t0 = time.perf_counter()
            sections += RUNNERS[name](ctx, tmp)
            timings[name] = round(time.perf_counter() - t0, 2)
            log.info("audit %s: %.1f s", name, timings[name])
        heads = headline(sections)
        sections.insert(0, overview_section(heads, timings))
        save_sections(tmp / AUDIT_FILE, sections, _meta(ctx, timings, heads))
    distributed.barrier()
    return out_dir


@contextlib.contextmanager
def _output(out_dir: Path) -> Iterator[Path]:
    """Rank 0 writes ``out_dir`` atomically; other ranks (which run every analysis to take part
    in the sharded decoding passes) write into a scratch directory that is removed."""
    if distributed.is_main():
        with atomic_dir(out_dir) as tmp:
            yield tmp
        return
    with tempfile.TemporaryDirectory(prefix="recbias-audit-") as tmp:
        yield Path(tmp)


def _meta(ctx: AuditContext, timings: dict[str, float], heads: list[tuple[str, str]]) -> dict:
    return {
        "kind": "audit",
        "run_dir": str(ctx.run_dir.resolve()),
        "run_name": ctx.run_cfg.name,
        "objective": ctx.run_cfg.train.objective.name,
        "dataset": ctx.ds.name,
        "split": ctx.cfg.split,
        "config": to_dict(ctx.cfg),
        "timings_s": timings,
        "headline": dict(heads),
        "time_utc": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "versions": package_versions(),
        "git": git_commit(),
    }


def overview_section(heads: list[tuple[str, str]], timings: dict[str, float]) -> Section:
    sec = Section("audit_overview", "Bias audit: headline numbers")
    sec.summary = (
        "The headline of each analysis below (LLM recommendations unless named). "
        "Timings are wall-clock seconds per analysis."
    )
    sec.tables.append(Table("headline", "Headline numbers", ["measure", "value"],
                            [[k, v] for k, v in heads]))  # fmt: skip
    sec.tables.append(Table("timings", "Seconds per analysis", ["analysis", "seconds"],
                            [[k, v] for k, v in timings.items()]))  # fmt: skip
    return sec


# --------------------------------------------------------------------------- headline


def _fmt(x: Any) -> str:
    return "n/a" if x is None else f"{float(x):.3f}"


def _by_key(sections: list[Section]) -> dict[str, Section]:
    return {s.key: s for s in sections}


def headline(
    sections: list[Section], k: int | None = None, model: str = "llm"
) -> list[tuple[str, str]]:
    """(label, value) of MGU/DGU@K per grouping, Gini@K, coverage@K, attribution ratios and mean
    Jaccard under history swap and rewording; K = the largest audited K (``k`` overrides)."""
    by, out = _by_key(sections), []
    fair = by.get(f"fairness_{model}")
    if fair is not None:
        gaps = fair.data["gaps"]
        k = k or max(g["k"] for g in gaps)
        for g in gaps:
            if g["k"] == k:
                tag = f"{g['grouping']}, {g['mode']}"
                out += [(f"MGU@{k} ({tag})", _fmt(g["mgu"])), (f"DGU@{k} ({tag})", _fmt(g["dgu"]))]
    conc = by.get("concentration")
    if conc is not None:
        rows = conc.data["concentration"].get(model, [])
        for c in rows if k is None else [r for r in rows if r["k"] == k]:
            out += [
                (f"Gini@{c['k']}", _fmt(c["gini"])),
                (f"coverage@{c['k']}", _fmt(c["coverage"])),
            ]
    if "attribution" in by:
        for label, ratios in by["attribution"].data["ratios"].items():
            for name, text in (
                ("task_history", "task/history"),
                ("prefix_history", "prefix/history"),
            ):
                out.append((f"attribution {text} ({label})", _fmt(ratios[name].get("mean"))))
    if "positional" in by:
        for label, p in by["positional"].data["positional"].items():
            out.append((f"recent-item attention / equal attention ({label})", _fmt(p["ratio"])))
    if "sensitivity" in by:
        data = by["sensitivity"].data["sensitivity"]
        swap = data.get(f"{model}/swap")
        words = [v["jaccard"] for key, v in data.items() if key.startswith(f"{model}/wording")]
        if swap is not None:
            out.append(("mean Jaccard, history swap", _fmt(swap["jaccard"])))
            if "shared_items" in swap:  # audits written before the shared-item count lack it
                shared = f"{swap['shared_items']:.2f} of {swap['k']}"
                out.append(("mean shared items, history swap", shared))
        if words:
            out.append(("mean Jaccard, rewording", _fmt(sum(words) / len(words))))
    return out
