"""The comparison config: its methods, their validation and each method's resolved run config.

    cfg = load_compare_config(Path("configs/compare_methods.toml"), ["methods.gdrt.train.lr=2e-4"])
    names = select_methods(cfg, only=["gdrt"])        # + the reference and reused models
    resolved = resolve_methods(cfg, names)            # {name: RunConfig}, validated

Every method starts from ``base`` and applies its ``set`` (dotted keys, as ``--set``); a method with
``reuse_model_of`` starts from that method's resolved config and may not touch training or the
weights. Errors name the method's key (``methods[6].set."train.lrr"``).
"""

from __future__ import annotations

import copy
import dataclasses
import difflib
import re
import types
import typing
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from recbias.compare.bias import BiasTableConfig
from recbias.config import (
    Config,
    apply_overrides,
    config_folder,
    from_dict,
    parse_override,
    read_toml,
    resolve_path_at,
    resolve_paths,
    to_dict,
)
from recbias.errors import ConfigError
from recbias.llmrec import RunConfig
from recbias.lm.loading import resolve_dtype
from recbias.metrics.ranking import check_ks, metric_names
from recbias.objectives import registered
from recbias.workflow import check_finish

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
    keep_resume_state: bool = field(
        default=False,
        metadata={
            "help": "keep each finished run's checkpoints/last and checkpoints/best (weights, "
            "optimiser, RNG: ~4x the model size); false deletes them once the run has written "
            "metrics.json and model/ (or adapter/). Epoch snapshots are always kept"
        },
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
