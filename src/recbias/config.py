"""Typed configs: TOML in, checked dataclasses out, resolved TOML back to disk.

Every config is a stdlib ``@dataclass`` whose fields declare their help text and their allowed
values next to the field, with :func:`spec`::

    epochs: int = field(default=2, metadata=spec("maximum number of epochs", ge=0))
    dropout: float = field(default=0.1, metadata=spec("dropout rate", ge=0, lt=1))
    audit_config: str | None = field(default=None, metadata=spec("audit TOML", path=True))

:func:`from_dict` builds a config from a nested mapping by introspection: unknown keys and wrong
types raise :class:`~recbias.errors.ConfigError` naming the dotted key (``train.lr``) and what was
expected. :func:`validate_config` then checks every declared constraint (``ge``, ``gt``, ``le``,
``lt``, ``choices``, ``min_len``, ``unique``) and calls each section's ``check()`` for the rules
that span several fields; those raise :class:`ConfigKeyError` with a key relative to their own
section and the walk prefixes the section's path, so every error names the full key
(``data.prepare.kcore``) on one line. Configs derive from :class:`Config`, whose ``validate()``
runs the same checks on an object built in Python.

Fields marked ``path=True`` are input files or folders: a relative path read from a config file is
made absolute against that file's folder, so a config keeps working when copied elsewhere; a
relative path given by ``--set`` resolves against the current directory. Output locations
(``output_dir``, ``cache_dir``) are not marked and stay relative to the current directory.

The constraint machinery lives in :mod:`recbias.config_rules` and is re-exported here.

Why not pydantic: the configs are plain dataclasses used throughout the code
(``dataclasses.replace``, ``asdict``, ``__post_init__``); declaring ranges in field metadata kept
them so, took ~190 lines (``config_rules``) instead of a new dependency whose errors span several
lines and whose models would replace every config class, and lets ``recbias config`` document the
same metadata.

    cfg = load_config(RunConfig, Path("configs/quickstart.toml"), ["train.epochs=1"])
    write_resolved(cfg, run_dir / "config.toml")
"""

from __future__ import annotations

import dataclasses
import difflib
import os
import tomllib
import types
import typing
from pathlib import Path
from typing import Any, Literal, TypeVar, get_args, get_origin

import tomli_w

from recbias.config_rules import (
    CONSTRAINTS,
    METADATA_KEYS,
    Config,
    ConfigKeyError,
    check_value,
    describe,
    invalid,
    join_key,
    rules,
    spec,
    validate_config,
)
from recbias.errors import ConfigError
from recbias.fsutil import write_text

__all__ = [
    "CONSTRAINTS",
    "METADATA_KEYS",
    "Config",
    "ConfigKeyError",
    "absolute_path",
    "apply_overrides",
    "check_value",
    "config_folder",
    "describe",
    "dumps",
    "from_dict",
    "invalid",
    "load_config",
    "load_recorded",
    "parse_override",
    "read_toml",
    "resolve_path_at",
    "resolve_paths",
    "rules",
    "spec",
    "to_dict",
    "validate_config",
    "write_resolved",
]

T = TypeVar("T")


def _type_name(tp: Any) -> str:
    origin = get_origin(tp)
    if origin is Literal:
        return "one of " + ", ".join(repr(a) for a in get_args(tp))
    if origin in (types.UnionType, typing.Union):
        return " or ".join(_type_name(a) for a in get_args(tp))
    if origin is not None:
        return f"{origin.__name__}[{', '.join(_type_name(a) for a in get_args(tp))}]"
    if tp is type(None):
        return "nothing (omit the key)"
    if dataclasses.is_dataclass(tp):
        return "a table"
    return getattr(tp, "__name__", str(tp))


def _fail(key: str, tp: Any, value: Any) -> ConfigError:
    return ConfigError(f"config key '{key}': expected {_type_name(tp)}, got {value!r}")


def _convert(key: str, tp: Any, value: Any) -> Any:
    """Check ``value`` against the annotation ``tp``; return it (converted where lossless)."""
    origin = get_origin(tp)
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise _fail(key, tp, value)
        return _build(tp, value, key)
    if origin is Literal:
        if value not in get_args(tp) or isinstance(value, bool) != any(
            isinstance(a, bool) for a in get_args(tp)
        ):
            raise _fail(key, tp, value)
        return value
    if origin in (types.UnionType, typing.Union):
        for arg in get_args(tp):
            if arg is type(None):
                continue
            try:
                return _convert(key, arg, value)
            except ConfigError:
                pass
        raise _fail(key, tp, value)
    if origin is list:
        if not isinstance(value, list):
            raise _fail(key, tp, value)
        (item_tp,) = get_args(tp)
        return [_convert(f"{key}[{i}]", item_tp, v) for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            raise _fail(key, tp, value)
        k_tp, v_tp = get_args(tp)
        return {_convert(key, k_tp, k): _convert(f"{key}.{k}", v_tp, v) for k, v in value.items()}
    return _convert_scalar(key, tp, value)


def _convert_scalar(key: str, tp: Any, value: Any) -> Any:
    if tp is bool:
        if isinstance(value, bool):
            return value
    elif tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif tp is float:
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
    elif tp is str:
        if isinstance(value, str):
            return value
    elif tp is Any:
        return value
    raise _fail(key, tp, value)


def _build(cls: type[T], data: dict[str, Any], prefix: str = "") -> T:
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls) if f.init]
    kwargs: dict[str, Any] = {}
    for key, value in data.items():
        dotted = join_key(prefix, key)
        if key not in names:
            close = difflib.get_close_matches(key, names, n=1)
            hint = f" (did you mean '{close[0]}'?)" if close else ""
            where = f"'{prefix}'" if prefix else "the top level"
            raise ConfigError(
                f"unknown config key '{dotted}'{hint}; known keys in {where}: {', '.join(names)}"
            )
        kwargs[key] = _convert(dotted, hints[key], value)
    try:
        return cls(**kwargs)
    except ConfigKeyError as exc:
        raise exc.under(prefix) from None
    except (TypeError, ValueError, ConfigError) as exc:
        raise ConfigError(f"config section '{prefix or '<top>'}': {exc}") from None


def from_dict(cls: type[T], data: dict[str, Any], prefix: str = "") -> T:
    """Build the dataclass ``cls`` from a nested mapping and check it; keys are named under
    ``prefix`` (the section's place in a larger config, if any)."""
    obj = _build(cls, data, prefix)
    validate_config(obj, prefix)
    return obj


def parse_override(text: str) -> tuple[list[str], Any]:
    """Parse ``a.b.c=value``; the value is read as TOML, falling back to a bare string."""
    if "=" not in text:
        raise ConfigError(f"override '{text}': expected key.path=value")
    key, raw = text.split("=", 1)
    key = key.strip()
    if not key or any(not part for part in key.split(".")):
        raise ConfigError(f"override '{text}': empty key")
    try:
        value = tomllib.loads(f"v = {raw}")["v"]
    except tomllib.TOMLDecodeError:
        value = raw
    return key.split("."), value


def apply_overrides(
    data: dict[str, Any], overrides: list[str], cls: type | None = None
) -> dict[str, Any]:
    """Set each ``key.path=value`` in ``data``; with ``cls``, relative paths in path fields are made
    absolute against the current directory."""
    for text in overrides:
        path, value = parse_override(text)
        if cls is not None:
            value = resolve_path_at(cls, path, value, Path.cwd())
        node = data
        for part in path[:-1]:
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise ConfigError(f"override '{text}': '{part}' is not a table")
            node = child
        node[path[-1]] = value
    return data


def absolute_path(value: str, base: Path) -> str:
    """``value`` (``~`` expanded) if absolute, else joined to ``base`` and normalised."""
    path = Path(value).expanduser()
    return (
        value if not value else str(path if path.is_absolute() else os.path.normpath(base / path))
    )


def _section_type(tp: Any) -> Any:
    """The dataclass inside ``tp`` (``X``, ``X | None``), else None."""
    if dataclasses.is_dataclass(tp):
        return tp
    if get_origin(tp) in (types.UnionType, typing.Union):
        found = [a for a in get_args(tp) if dataclasses.is_dataclass(a)]
        return found[0] if len(found) == 1 else None
    return None


def resolve_paths(cls: type, data: dict[str, Any], base: Path) -> dict[str, Any]:
    """A copy of the mapping ``data`` (for ``cls``) whose relative path fields are made absolute
    against ``base``; keys ``cls`` does not know are left for :func:`from_dict` to report."""
    hints = typing.get_type_hints(cls)
    meta = {f.name: f.metadata for f in dataclasses.fields(cls)}
    out = dict(data)
    for key, value in data.items():
        if key not in meta:
            continue
        tp, origin = hints[key], get_origin(hints[key])
        if meta[key].get("path") and isinstance(value, str):
            out[key] = absolute_path(value, base)
        elif (sub := _section_type(tp)) is not None and isinstance(value, dict):
            out[key] = resolve_paths(sub, value, base)
        elif origin in (list, dict) and (sub := _section_type(get_args(tp)[-1])) is not None:
            out[key] = _resolve_each(sub, value, base)
    return out


def _resolve_each(cls: type, value: Any, base: Path) -> Any:
    if isinstance(value, list):
        return [resolve_paths(cls, v, base) if isinstance(v, dict) else v for v in value]
    if isinstance(value, dict):
        return {
            k: resolve_paths(cls, v, base) if isinstance(v, dict) else v for k, v in value.items()
        }
    return value


def resolve_path_at(cls: type, keys: list[str], value: Any, base: Path) -> Any:
    """``value`` as :func:`resolve_paths` would resolve it at the dotted ``keys`` of ``cls``."""
    tree: Any = value
    for key in reversed(keys):
        tree = {key: tree}
    resolved = resolve_paths(cls, tree, base)
    for key in keys:
        resolved = resolved[key]
    return resolved


def read_toml(path: Path) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file '{path}' does not exist")
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file '{path}': invalid TOML: {exc}") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"config file '{path}': not UTF-8 (byte {exc.start})") from None


def config_folder(path: Path) -> Path:
    """The folder that relative paths inside the config file ``path`` are resolved against."""
    return Path(os.path.abspath(path)).parent


def load_config(cls: type[T], path: Path | None, overrides: list[str] | None = None) -> T:
    """Read ``path`` (None = all defaults), resolve its relative paths against its folder, apply
    the ``--set`` overrides (relative paths against the current directory), build and check."""
    data = resolve_paths(cls, read_toml(path), config_folder(path)) if path is not None else {}
    return from_dict(cls, apply_overrides(data, list(overrides or []), cls))


def load_recorded(cls: type[T], path: Path) -> T:
    """A config written by :func:`write_resolved` (a run's ``config.toml``), paths as recorded:
    new runs record absolute paths, older ones paths relative to where they were run."""
    return from_dict(cls, read_toml(path))


def to_dict(cfg: Any) -> dict[str, Any]:
    """Plain nested dict of a config, with ``None`` values dropped (TOML has no null)."""

    def clean(value: Any) -> Any:
        if isinstance(value, dict):
            return {k: clean(v) for k, v in value.items() if v is not None}
        if isinstance(value, list):
            return [clean(v) for v in value]
        return value

    return clean(dataclasses.asdict(cfg))


def dumps(cfg: Any) -> str:
    return tomli_w.dumps(to_dict(cfg))


def write_resolved(cfg: Any, path: Path) -> None:
    write_text(path, "# resolved recbias config: every default made explicit\n" + dumps(cfg))
