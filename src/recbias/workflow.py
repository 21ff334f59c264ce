"""Recipes above the pipeline: a run followed by its audit and report (``[finish]``).

    cfg = load_run_config(Path("configs/quickstart.toml"), ["train.epochs=1"])  # checks [finish]
    result = run_and_finish(cfg, run_dir)    # what `recbias run CONFIG.toml` does

The LLM pipeline (:mod:`recbias.llmrec`) knows nothing of the analyses; the audit settings named
by ``finish.audit_config`` / ``finish.audit_set`` are resolved and checked here.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from recbias import distributed
from recbias.config import invalid, load_config
from recbias.errors import ConfigError
from recbias.evaluation.summary import write_metrics_json
from recbias.genrec.config import GenRecRunConfig
from recbias.genrec.runner import AfterHook
from recbias.llmrec import FinishConfig, RunConfig, run_experiment
from recbias.train.loop import Reporter

if TYPE_CHECKING:
    from recbias.audit.config import AuditConfig

# The audit and the report are imported when a run asks for them: `recbias run` without them
# loads neither the analyses nor the renderer.


def audit_settings(finish: FinishConfig) -> AuditConfig:
    """The resolved audit settings of ``[finish]``; the error names the finish key."""
    from recbias.audit.config import AuditConfig

    path = finish.audit_config
    if path is not None and not Path(path).is_file():
        raise invalid("audit_config", "no such file", path).under("finish")
    try:
        return load_config(AuditConfig, Path(path) if path else None, finish.audit_set)
    except ConfigError as exc:
        raise invalid("audit_config / audit_set", f"invalid audit settings ({exc})").under(
            "finish"
        ) from None


def check_finish(cfg: RunConfig) -> None:
    """Fail at load time, not after training, when an audit is asked for with bad settings."""
    if cfg.finish.audit:
        audit_settings(cfg.finish)


def load_run_config(path: Path, overrides: Sequence[str] = ()) -> RunConfig:
    """A run config with ``--set`` overrides, its ``[finish]`` audit settings checked."""
    cfg = load_config(RunConfig, Path(path), list(overrides))
    check_finish(cfg)
    return cfg


def run_and_finish(
    cfg: RunConfig, run_dir: Path, resume: bool = False, reporter: Reporter | None = None
) -> dict[str, Any]:
    """The whole run (:func:`recbias.llmrec.run_experiment`), then :func:`finish`."""
    result = run_experiment(cfg, run_dir, resume, reporter)
    finish(cfg, run_dir, result.get("timing", {}))
    return result


def finish(cfg: RunConfig, run_dir: Path, timing: dict[str, float]) -> None:
    """The optional audit (every rank: sharded), then the report (``[finish]``; rank 0); their
    times join metrics.json."""
    if cfg.finish.audit:
        from recbias.audit import run_audit

        t0 = time.perf_counter()
        run_audit(run_dir, audit_settings(cfg.finish))
        timing["audit"] = time.perf_counter() - t0
    if not distributed.is_main():
        return
    if cfg.finish.report:
        from recbias.report import build_report

        t0 = time.perf_counter()
        build_report([run_dir], run_dir / "report", title=f"recbias run {run_dir.name}")
        timing["report"] = time.perf_counter() - t0
    if cfg.finish.audit or cfg.finish.report:
        doc = json.loads((run_dir / "metrics.json").read_text(encoding="utf-8"))
        doc["timing"].update(timing)
        write_metrics_json(run_dir / "metrics.json", doc)


def genrec_finisher(cfg: GenRecRunConfig, run_dir: Path) -> AfterHook | None:
    """What ``recbias genrec`` runs after testing (``[finish]``): the audit of the fitted model
    (settings checked now, before training) and the report."""
    settings = audit_settings(cfg.finish) if cfg.finish.audit else None

    def after(rec, ds) -> None:
        if settings is not None:
            from recbias.audit.sequential import audit_recommender

            meta = {"run_dir": str(run_dir.resolve()), "run_name": cfg.name}
            audit_recommender(rec, ds, settings, run_dir / "audit", "genrec", meta)
        if cfg.finish.report:
            from recbias.report import build_report

            build_report([run_dir], run_dir / "report", title=f"recbias genrec {run_dir.name}")

    return after if settings is not None or cfg.finish.report else None
