"""Compare training objectives and decoding variants: one config → methods × seeds → one table.

    recbias compare configs/quickstart_compare.toml --seeds 0,1,2 --only sft,gdrt
    result = run_comparison(load_config(CompareConfig, path), Path("runs/cmp"), seeds=[0, 1])

``out_dir`` holds ``compare.toml`` (the resolved comparison config), one full run directory per seed
and method (``seed-0/sft/``: config.toml, metrics.json, predictions/, model/ ...; a decode-only
variant has no model/ nor checkpoints/), the table ``comparison.md|.csv|.json``
(:mod:`recbias.compare.table`) and its bias table (:mod:`recbias.compare.bias`,
``comparison_bias.csv``). The config and each method's resolved run config:
:mod:`recbias.compare.config`.

Every method starts from ``base`` and applies its ``set`` (dotted keys, as ``--set``). A method with
``reuse_model_of`` starts from that method's resolved config, loads its trained weights (same seed)
and only decodes and evaluates, so its ``set`` may not touch training or the weights.

All methods share ``base.data`` (``data.*`` is refused in ``set``): the data is prepared once
(cached) and every method and seed sees the same test samples, because a seed replaces ``base.seed``
(model init, data order, sampling) and never ``base.data.prepare.seed`` (the subsampling).

Decoding groups (:mod:`recbias.compare.groups`): a method whose decoding settings differ from the
reference's (``decode.candidates``, ``decode.beam``) is compared with the reference's trained model
decoded with its settings, a decode-only row ``<reference>@<label>`` (``seed-0/sft@length_penalty=
0.0/``) added to the plan and the table, so a decoding method's Δ does not mix in a length penalty.

Every selected method is resolved and validated before anything trains, so a typo in the seventh
method fails at once, naming ``methods[6].set."train.lrr"``. A method whose ``metrics.json`` exists
is skipped (its recorded config must be the one asked for), so a killed comparison continues where
it stopped; a half-trained method resumes from ``checkpoints/last``.

Under torchrun every rank runs every method (data-parallel training, sharded decoding) and rank 0
alone writes: ``compare.toml``, the run directories and the table.
"""

from __future__ import annotations

import dataclasses
import logging
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

from recbias import distributed, llmrec
from recbias.compare.bias import bias_k, bias_markdown, comparison_bias
from recbias.compare.config import (
    BASELINE_ROW,
    CompareConfig,
    resolve_methods,
    select_methods,
)
from recbias.compare.groups import DecodingGroups, decoding_groups
from recbias.compare.table import build_comparison, method_rows, write_comparison
from recbias.config import (
    dumps,
    write_resolved,
)
from recbias.data.prepare import prepare_dataset
from recbias.errors import ConfigError, DataError
from recbias.evaluation.summary import write_metrics_json
from recbias.llmrec import RunConfig
from recbias.run_marker import UNFINISHED, mark_finished
from recbias.train.loop import Reporter
from recbias.workflow import run_and_finish

log = logging.getLogger(__name__)

ReporterFactory = Callable[[int, str, Path], Reporter | None]


def _check_recorded(cfg: RunConfig, run_dir: Path) -> None:
    path = run_dir / "config.toml"
    recorded = path.read_text().splitlines()[1:] if path.is_file() else None
    if recorded is None or "\n".join(recorded) + "\n" != dumps(cfg):
        raise ConfigError(
            f"'{run_dir}' holds a run of a different config than the one asked for; "
            "delete that directory or choose another --out"
        )


def decode_only(
    cfg: RunConfig, run_dir: Path, source_cfg: RunConfig, source_dir: Path
) -> dict[str, Any]:
    """Decode and evaluate with the trained weights of ``source_dir``; writes a full run layout
    (config, environment, predictions, metrics.json with train time 0, summary) but no model."""
    t_start = time.perf_counter()
    llmrec.setup_run(cfg, run_dir, resume=False)
    ds = llmrec.load_data(cfg)
    weights = llmrec.trained_weights(source_cfg, source_dir)
    lm = llmrec.load_lm(cfg, ds, weights=weights)
    lm.model.eval()
    timing = {"prepare_and_load": time.perf_counter() - t_start, "train": 0.0}
    samples, recs, seconds = llmrec.recommend(cfg, ds, lm, run_dir)
    timing.update({f"recommend_{k}": v for k, v in seconds.items()})
    if not distributed.is_main():  # decoded its share; rank 0 evaluates and writes
        return {}
    metrics = llmrec.evaluate(cfg, samples, recs)
    result: dict[str, Any] = {"dataset": ds.card.get("name"), "training": {}, "timing": timing}
    result |= {"reused_model_of": str(weights), "metrics": metrics}
    timing["total"] = time.perf_counter() - t_start
    write_metrics_json(run_dir / "metrics.json", result)
    result["summary"] = llmrec.write_summary(cfg, run_dir, result)
    mark_finished(run_dir)
    return result


def run_method(
    cfg: RunConfig,
    run_dir: Path,
    source: tuple[RunConfig, Path] | None,
    reporter: Callable[[], Reporter | None] | None = None,
) -> str:
    """Run one method for one seed; returns 'skipped', 'trained', 'resumed' or 'decoded'.

    ``source`` = (config, run dir) of the method whose model a decode-only variant reuses;
    ``reporter()`` is called only when something runs.
    """
    if (run_dir / "metrics.json").is_file() and not (run_dir / UNFINISHED).is_file():
        _check_recorded(cfg, run_dir)
        log.info("%s: finished earlier, skipped", run_dir)
        return "skipped"
    if distributed.is_main():
        run_dir.mkdir(parents=True, exist_ok=True)
    progress = reporter() if reporter else None
    resume = source is None and (run_dir / "checkpoints" / "last").is_dir()
    if resume:
        _check_recorded(cfg, run_dir)
    distributed.barrier()  # every rank decided before rank 0 writes into run_dir
    if source is not None:
        decode_only(cfg, run_dir, *source)
    else:
        run_and_finish(cfg, run_dir, resume=resume, reporter=progress)
    distributed.barrier()  # rank 0's metrics.json exists before any rank looks for the next
    return "decoded" if source is not None else "resumed" if resume else "trained"


RESUME_STATE = ("last", "best")  # checkpoints/<name>: only a run that has not finished needs them


def prune_resume_state(run_dir: Path) -> list[Path]:
    """Delete ``checkpoints/last`` and ``checkpoints/best`` of a finished run (its metrics.json and
    model/ or adapter/ written, no UNFINISHED marker); returns what was deleted."""
    finished = (run_dir / "metrics.json").is_file() and not (run_dir / UNFINISHED).is_file()
    if not finished or not any((run_dir / d).is_dir() for d in ("model", "adapter")):
        return []
    gone = [run_dir / "checkpoints" / n for n in RESUME_STATE]
    gone = [d for d in gone if d.is_dir()]
    for d in gone:
        shutil.rmtree(d)
    return gone


@dataclass(frozen=True)
class PlannedRun:
    """One method × seed: its config, directory and (for a decode-only variant) the model source."""

    seed: int
    name: str
    cfg: RunConfig
    run_dir: Path
    source: tuple[RunConfig, Path] | None


def method_groups(cfg: CompareConfig, resolved: dict[str, RunConfig]) -> DecodingGroups:
    """The decoding groups of the ``resolved`` methods (:mod:`recbias.compare.groups`)."""
    reuse = {m.name: m.reuse_model_of for m in cfg.methods}
    ordered = {m.name: resolved[m.name] for m in cfg.methods if m.name in resolved}
    return decoding_groups(cfg.reference, reuse, ordered, cfg.base.name)


def plan_runs(
    cfg: CompareConfig,
    out_dir: Path,
    resolved: dict[str, RunConfig],
    seeds: Sequence[int],
    groups: DecodingGroups | None = None,
) -> list[PlannedRun]:
    """Runs in order: per seed, the methods of ``resolved`` that train, the added group references
    of ``groups``, then the decode-only variants."""
    reuse = {m.name: m.reuse_model_of for m in cfg.methods}
    extra = groups.extra if groups is not None else {}
    reuse |= {row: src for row, (_, src) in extra.items()}
    configs = {n: c for n, c in resolved.items() if reuse[n] is None}
    configs |= {row: run for row, (run, _) in extra.items()}
    configs |= {n: c for n, c in resolved.items() if reuse[n] is not None}
    plan = []
    for seed in seeds:
        runs = {n: dataclasses.replace(c, seed=seed) for n, c in configs.items()}
        for name, run in runs.items():
            src = reuse[name]
            source = (runs[src], out_dir / f"seed-{seed}" / src) if src else None
            plan.append(PlannedRun(seed, name, run, out_dir / f"seed-{seed}" / name, source))
    return plan


def run_comparison(
    cfg: CompareConfig,
    out_dir: Path,
    seeds: Sequence[int] | None = None,
    *,
    only: Sequence[str] | None = None,
    reporter: ReporterFactory | None = None,
) -> dict[str, Any]:
    """Run every (selected) method for every seed, then write the comparison table.

    Returns ``{"comparison": <comparison.json content>, "markdown": str, "status": {run: what
    happened}}``; ``reporter(seed, method, run_dir)`` may return a training progress reporter.
    Every method is validated, and every earlier run checked against its config, before any run.
    """
    out_dir, seeds = Path(out_dir), list(cfg.seeds if seeds is None else seeds)
    if not seeds or len(set(seeds)) != len(seeds):
        raise ConfigError(f"--seeds: expected distinct seeds, got {seeds}")
    names = select_methods(cfg, only)
    resolved = resolve_methods(cfg, names)
    if cfg.bias.enabled and cfg.bias.k is not None:  # before anything trains
        bias_k(cfg.bias, {name: r.decode.beam.n_return for name, r in resolved.items()})
    groups = method_groups(cfg, resolved)
    plan = plan_runs(cfg, out_dir, resolved, seeds, groups)
    for run in plan:  # earlier runs must be of the same configs
        if any((run.run_dir / p).exists() for p in ("metrics.json", "checkpoints/last")):
            _check_recorded(run.cfg, run.run_dir)
    if distributed.is_main():
        prepare_dataset(cfg.base.data)  # once; every run then loads the cached preparation
        write_resolved(cfg, out_dir / "compare.toml")
    distributed.barrier()
    status = {}
    for run in plan:
        announce = partial(reporter, run.seed, run.name, run.run_dir) if reporter else None
        key = f"seed-{run.seed}/{run.name}"
        status[key] = run_method(run.cfg, run.run_dir, run.source, announce)
        if not cfg.keep_resume_state and distributed.is_main():
            prune_resume_state(run.run_dir)
        if run is not plan[-1] and distributed.is_main():  # a time-out keeps what finished
            try:
                write_table(cfg, out_dir, names, seeds, groups)
            except DataError as exc:
                log.warning("comparison table not updated after %s: %s", key, exc)
    if not distributed.is_main():
        return {"comparison": {}, "markdown": "", "status": status}
    table, markdown = write_table(cfg, out_dir, names, seeds, groups)
    return {"comparison": table, "markdown": markdown, "status": status}


def write_table(
    cfg: CompareConfig,
    out_dir: Path,
    names: Sequence[str],
    seeds: Sequence[int],
    groups: DecodingGroups | None = None,
) -> tuple[dict[str, Any], str]:
    """Write comparison.{json,md,csv} of the finished runs: the seeds whose reference run has
    finished, and the rows finished for all of them whose group reference has too (``complete``
    says whether that is the whole plan). Raises DataError when the reference has not finished
    for any seed. ``groups`` defaults to the decoding groups of ``names``."""

    def done(name: str, seed: int) -> bool:
        return (out_dir / f"seed-{seed}" / name / "metrics.json").is_file()

    seeds_done = [s for s in seeds if done(cfg.reference, s)]
    if not seeds_done:
        raise DataError(f"the reference method '{cfg.reference}' has not finished yet")
    groups = groups or method_groups(cfg, resolve_methods(cfg, names))
    reuse = {m.name: m.reuse_model_of for m in cfg.methods}
    reuse |= {row: src for row, (_, src) in groups.extra.items()}
    compare_to = groups.compare_to
    finished = {n for n in groups.order() if all(done(n, s) for s in seeds_done)}
    rows = [
        (n, reuse[n], groups.label[n], compare_to[n])
        for n in groups.order()
        if n in finished and (compare_to[n] is None or compare_to[n] in finished)
    ]
    runs = method_rows(out_dir, rows, cfg.reference, seeds_done, BASELINE_ROW)
    complete = len(seeds_done) == len(seeds) and len(rows) == len(groups.label)
    meta = {"name": cfg.name, "seeds": seeds_done, "complete": complete}
    n_boot = cfg.base.eval.bootstrap
    table = build_comparison(runs, cfg.reference, cfg.ks, cfg.paired_metric, n_boot, meta)
    extra = ""
    if cfg.bias.enabled:
        table["bias"] = comparison_bias(
            cfg.base.data, runs, cfg.reference, cfg.bias, n_boot, out_dir
        )
        extra = bias_markdown(table["bias"])
    return table, write_comparison(out_dir, table, extra)
