"""Compare training objectives and decoding variants: one config → methods × seeds → one table.

    recbias compare configs/quickstart_compare.toml --seeds 0,1,2 --only sft,gdrt
    result = run_comparison(load_config(CompareConfig, path), Path("runs/cmp"), seeds=[0, 1])

``out_dir`` holds ``compare.toml`` (the resolved comparison config), one full run directory per seed
and method (``seed-0/sft/``: config.toml, metrics.json, predictions/, model/ ...; a decode-only
variant has no model/ nor checkpoints/) and the table ``comparison.md|.csv|.json``
(:mod:`recbias.compare.table`).

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

import copy
import dataclasses
import difflib
import logging
import re
import time
import types
import typing
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

from recbias import distributed, llmrec
from recbias.compare.bias import BiasTableConfig, bias_k, bias_markdown, comparison_bias
from recbias.compare.groups import DecodingGroups, decoding_groups
from recbias.compare.table import build_comparison, method_rows, write_comparison
from recbias.config import (
    Config,
    apply_overrides,
    config_folder,
    dumps,
    from_dict,
    parse_override,
    read_toml,
    resolve_path_at,
    resolve_paths,
    to_dict,
    write_resolved,
)
from recbias.data.prepare import prepare_dataset
from recbias.errors import ConfigError, DataError
from recbias.evaluation.summary import write_metrics_json
from recbias.llmrec import RunConfig
from recbias.lm.loading import resolve_dtype
from recbias.metrics.ranking import check_ks, metric_names
from recbias.objectives import registered
from recbias.run_marker import UNFINISHED, mark_finished
from recbias.train.loop import Reporter
from recbias.workflow import check_finish, run_and_finish

log = logging.getLogger(__name__)

# Keys a method may not set, and why.
RESERVED = {
    "seed": "the comparison's 'seeds' set it",
    "name": "each run is named '<base.name>-<method>'",
    "output_dir": "runs go under the comparison's output directory",
    "data": "all methods share the prepared data and the test samples",
}
# Keys a decode-only variant may not set: they would change the model it reuses.
REUSE_FORBIDDEN = (
    "train", "model.path", "model.finetune", "model.lora", "model.adapter", "sprec",
)  # fmt: skip
NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.+-]*")
BASELINE_ROW = "popularity"

ReporterFactory = Callable[[int, str, Path], Reporter | None]


@dataclass
class MethodSpec(Config):
    name: str = field(metadata={"help": "row name and run directory name, e.g. 'gdrt'"})
    set: dict[str, Any] = field(
        default_factory=dict,
        metadata={"help": 'dotted overrides of the base, e.g. {"train.objective.name" = "gdrt"}'},
    )
    reuse_model_of: str | None = field(
        default=None,
        metadata={"help": "decode-only: reuse this method's trained model (same seed)"},
    )


@dataclass
class CompareConfig(Config):
    base: RunConfig = field(
        default_factory=RunConfig,
        metadata={"help": "the shared experiment every method starts from"},
    )
    methods: list[MethodSpec] = field(
        default_factory=list, metadata={"help": "the compared methods ([[methods]])"}
    )
    name: str = field(default="comparison", metadata={"help": "title of the comparison table"})
    seeds: list[int] = field(
        default_factory=lambda: [0],
        metadata={
            "help": "seeds; each replaces base.seed (not the data subsampling seed)",
            "min_len": 1,
            "unique": True,
        },
    )
    reference: str = field(
        default="sft", metadata={"help": "method the paired significance tests compare against"}
    )
    ks: list[int] = field(
        default_factory=lambda: [5, 10, 20], metadata={"help": "cut-offs of HR@K and NDCG@K"}
    )
    paired_metric: str = field(
        default="NDCG@10", metadata={"help": "metric of the Δ and p columns of the table"}
    )
    output_dir: str = field(
        default="runs/compare", metadata={"help": "the comparison's directory (resumable)"}
    )
    bias: BiasTableConfig = field(
        default_factory=BiasTableConfig,
        metadata={"help": "popularity concentration and MGU/DGU of every row's lists, with CIs"},
    )

    def check(self) -> None:
        _check_names(self.methods)
        names = [m.name for m in self.methods]
        if self.reference not in names:
            hint = _hint(self.reference, names)
            raise ConfigError(f"config key 'reference': unknown method '{self.reference}'{hint}")
        for i, spec in enumerate(self.methods):
            _check_reuse(i, spec, {m.name: m for m in self.methods})
            _check_reserved(i, spec)
        try:
            check_ks(self.ks)
        except ValueError as exc:
            raise ConfigError(f"config key 'ks': {exc}") from None
        beams = self.base.decode.beam.num_beams
        if self.bias.enabled and self.bias.k is not None and self.bias.k > beams:
            raise ConfigError(
                f"config key 'bias.k': {self.bias.k} is above the lists' length "
                f"(base.decode.beam.num_beams = {beams}); set bias.k <= {beams}"
            )
        if self.paired_metric not in metric_names(self.ks):
            raise ConfigError(
                f"config key 'paired_metric': expected one of {metric_names(self.ks)}, "
                f"got '{self.paired_metric}'"
            )


def load_compare_config(path: Path, overrides: Sequence[str] = ()) -> CompareConfig:
    """Read a comparison config and apply ``--set`` overrides.

    ``methods.NAME.KEY=VALUE`` adds ``KEY = VALUE`` to method NAME's ``set`` (NAME may contain
    dots; the longest method name that fits wins), e.g. ``methods.gdrt.train.objective.gdrt.tau=0.2``;
    every other override applies to the comparison config as usual (``base.train.epochs=1``).
    """
    data = _resolve_file_paths(read_toml(path), config_folder(path))
    plain: list[str] = []
    for text in overrides:
        keys, value = parse_override(text)
        if keys[0] != "methods":
            plain.append(text)
            continue
        methods = data.get("methods")
        tables = [m for m in methods if isinstance(m, dict)] if isinstance(methods, list) else []
        dotted = ".".join(keys[1:])
        fits = [m for m in tables if dotted.startswith(f"{m.get('name')}.")]
        if not fits:
            names = ", ".join(str(m.get("name")) for m in tables) or "none"
            raise ConfigError(
                f"override '{text}': expected methods.NAME.KEY=VALUE with NAME one of the "
                f"config's methods ({names})"
            )
        spec = max(fits, key=lambda m: len(str(m["name"])))
        sets = spec.setdefault("set", {})
        if not isinstance(sets, dict):
            raise ConfigError(f"override '{text}': method '{spec['name']}' has a non-table set")
        key = dotted[len(str(spec["name"])) + 1 :]
        sets[key] = resolve_path_at(RunConfig, key.split("."), value, Path.cwd())
    return from_dict(CompareConfig, apply_overrides(data, plain, CompareConfig))


def _resolve_file_paths(data: dict[str, Any], folder: Path) -> dict[str, Any]:
    """Relative paths of ``base`` and of every method's ``set`` made absolute against ``folder``."""
    data = resolve_paths(CompareConfig, data, folder)
    for method in data.get("methods", []) if isinstance(data.get("methods"), list) else []:
        if isinstance(method, dict) and isinstance(method.get("set"), dict):
            method["set"] = {
                key: resolve_path_at(RunConfig, key.split("."), value, folder)
                for key, value in flatten_set(method["set"]).items()
            }
    return data


def _hint(name: str, names: Sequence[str]) -> str:
    close = difflib.get_close_matches(name, list(names), n=1)
    known = f"; methods: {', '.join(names)}"
    return (f" (did you mean '{close[0]}'?)" if close else "") + known


def _check_names(methods: list[MethodSpec]) -> None:
    if not methods:
        raise ConfigError("config key 'methods': expected at least one [[methods]] table")
    seen: set[str] = set()
    for i, spec in enumerate(methods):
        if not NAME_PATTERN.fullmatch(spec.name) or spec.name == BASELINE_ROW:
            raise ConfigError(
                f"config key 'methods[{i}].name': '{spec.name}' must be letters, digits, '_.+-' "
                f"and not '{BASELINE_ROW}' (the baseline row)"
            )
        if spec.name in seen:
            raise ConfigError(f"config key 'methods[{i}].name': duplicate method '{spec.name}'")
        seen.add(spec.name)


def _check_reuse(i: int, spec: MethodSpec, specs: dict[str, MethodSpec]) -> None:
    target = spec.reuse_model_of
    if target is None:
        return
    key = f"config key 'methods[{i}].reuse_model_of'"
    if target not in specs:
        raise ConfigError(f"{key}: unknown method '{target}'{_hint(target, list(specs))}")
    if target == spec.name or specs[target].reuse_model_of is not None:
        raise ConfigError(f"{key}: '{target}' does not train a model (reuse a method that trains)")


def flatten_set(values: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"train": {"lr": 1}}`` and ``{"train.lr": 1}`` both become ``{"train.lr": 1}``."""
    out: dict[str, Any] = {}
    for key, value in values.items():
        dotted = f"{prefix}.{key}" if prefix else key
        if isinstance(value, dict) and value:
            out.update(flatten_set(value, dotted))
        else:
            out[dotted] = value
    return out


def _matches(key: str, prefix: str) -> bool:
    return key == prefix or key.startswith(prefix + ".")


def _check_reserved(i: int, spec: MethodSpec) -> None:
    for key in flatten_set(spec.set):
        where = f"config key 'methods[{i}].set.\"{key}\"'"
        for prefix, why in RESERVED.items():
            if _matches(key, prefix):
                raise ConfigError(f"{where}: a method may not set '{prefix}' ({why})")
        if spec.reuse_model_of and any(_matches(key, p) for p in REUSE_FORBIDDEN):
            raise ConfigError(
                f"{where}: '{spec.name}' reuses the model of '{spec.reuse_model_of}', so it may "
                f"not change {', '.join(REUSE_FORBIDDEN)}"
            )


def key_error(cls: type, key: str) -> str | None:
    """Why the dotted ``key`` names no field of the config dataclass ``cls`` (None if it does)."""
    parts = key.split(".")
    tp: Any = cls
    for depth, part in enumerate(parts):
        if typing.get_origin(tp) in (types.UnionType, typing.Union):  # X | None → X
            tp = next(a for a in typing.get_args(tp) if a is not type(None))
        if typing.get_origin(tp) is dict:
            return None
        where = ".".join(parts[:depth])
        if not dataclasses.is_dataclass(tp):
            return f"'{where}' is not a table"
        names = [f.name for f in dataclasses.fields(tp) if f.init]
        if part not in names:
            close = difflib.get_close_matches(part, names, n=1)
            hint = f" (did you mean '{close[0]}'?)" if close else ""
            return f"unknown key '{part}' in '{where or '<top>'}'{hint}; known: {', '.join(names)}"
        tp = typing.get_type_hints(tp)[part]
    return None


def _check_objective(i: int, spec: MethodSpec, sets: dict[str, Any], start: dict) -> None:
    name = sets.get("train.objective.name", start["train"]["objective"]["name"])
    if name not in registered():
        raise ConfigError(
            f"config key 'methods[{i}].set.\"train.objective.name\"': unknown objective '{name}' "
            f"of method '{spec.name}'; registered: {', '.join(registered())} "
            "(leave the method out with --only)"
        )


def _apply_set(i: int, spec: MethodSpec, start: dict[str, Any]) -> dict[str, Any]:
    sets = flatten_set(spec.set)
    _check_objective(i, spec, sets, start)
    data = copy.deepcopy(start)
    for key, value in sets.items():
        problem = key_error(RunConfig, key)
        if problem:
            raise ConfigError(f"config key 'methods[{i}].set.\"{key}\"': {problem}")
        node = data
        for part in key.split(".")[:-1]:
            node = node.setdefault(part, {})
        node[key.split(".")[-1]] = value
    return data


def select_methods(cfg: CompareConfig, only: Sequence[str] | None = None) -> list[str]:
    """Methods to run, in run order: those that train (config order), then decode-only variants.

    ``only`` keeps the named methods plus what they need: the reference (the paired tests compare
    against it) and the models that variants reuse.
    """
    specs = {m.name: m for m in cfg.methods}
    wanted = set(specs)
    if only is not None:
        unknown = [n for n in only if n not in specs]
        if unknown:
            raise ConfigError(
                f"--only: unknown method '{unknown[0]}'{_hint(unknown[0], list(specs))}"
            )
        wanted = {*only, cfg.reference}
        wanted |= {specs[n].reuse_model_of for n in wanted if specs[n].reuse_model_of}
    ordered = [m.name for m in cfg.methods if m.name in wanted]
    return sorted(ordered, key=lambda n: specs[n].reuse_model_of is not None)


def resolve_methods(cfg: CompareConfig, names: Sequence[str]) -> dict[str, RunConfig]:
    """Each method's full RunConfig (seed = ``base.seed``), validated; errors name the method key.

    ``names`` must list reused methods before their variants (as :func:`select_methods` does).
    """
    index = {m.name: i for i, m in enumerate(cfg.methods)}
    dicts: dict[str, dict[str, Any]] = {}  # each method's resolved config as a plain dict
    out: dict[str, RunConfig] = {}
    for name in names:
        i, spec = index[name], cfg.methods[index[name]]
        start = dicts[spec.reuse_model_of] if spec.reuse_model_of else to_dict(cfg.base)
        data = _apply_set(i, spec, start)
        data["name"] = f"{cfg.base.name}-{name}"
        try:
            out[name] = from_dict(RunConfig, data)
            check_finish(out[name])
        except ConfigError as exc:
            raise ConfigError(f"method '{name}' (methods[{i}].set): {exc}") from None
        # model.dtype = "auto" -> what this machine runs, as the runs record it (and a rerun
        # checks its finished runs against)
        resolve_dtype(out[name].model)
        dicts[name] = data
    return out


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
        k = bias_k(cfg.bias, cfg.base.decode.beam.num_beams)
        table["bias"] = comparison_bias(
            cfg.base.data, runs, cfg.reference, cfg.bias, k, n_boot, out_dir
        )
        extra = bias_markdown(table["bias"], table["n_seeds"])
    return table, write_comparison(out_dir, table, extra)
