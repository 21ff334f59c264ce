"""Typed configs: TOML in, validated dataclasses out, resolved TOML back to disk.

Every config is a stdlib ``@dataclass`` whose fields carry their help text in
``field(metadata={"help": ...})``. :func:`from_dict` validates a nested mapping against such a class
by introspection: unknown keys and wrong types raise :class:`ConfigError` naming the dotted key
(``train.lr``) and what was expected. ``--set key.path=value`` overrides are parsed as TOML values.

    cfg = load_config(RunConfig, Path("configs/quickstart.toml"), ["train.epochs=1"])
    write_resolved(cfg, run_dir / "config.toml")
"""

from __future__ import annotations

import dataclasses
import difflib
import tomllib
import types
import typing
from pathlib import Path
from typing import Any, Literal, TypeVar, get_args, get_origin

import tomli_w

from recbias.errors import ConfigError
from recbias.fsutil import write_text

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
        dotted = f"{prefix}.{key}" if prefix else key
        if key not in names:
            close = difflib.get_close_matches(key, names, n=1)
            hint = f" (did you mean '{close[0]}'?)" if close else ""
            where = f"'{prefix}'" if prefix else "the top level"
            raise ConfigError(
                f"unknown config key '{dotted}'{hint}; known keys in {where}: {', '.join(names)}"
            )
        kwargs[key] = _convert(dotted, hints[key], value)
    try:
        obj = cls(**kwargs)
    except (TypeError, ValueError, ConfigError) as exc:
        raise ConfigError(f"config section '{prefix or '<top>'}': {exc}") from None
    validate = getattr(obj, "validate", None)
    if callable(validate):
        validate()
    return obj


def from_dict(cls: type[T], data: dict[str, Any]) -> T:
    """Validate a nested mapping against the dataclass ``cls``."""
    return _build(cls, data)


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


def apply_overrides(data: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    for text in overrides:
        path, value = parse_override(text)
        node = data
        for part in path[:-1]:
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise ConfigError(f"override '{text}': '{part}' is not a table")
            node = child
        node[path[-1]] = value
    return data


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


def load_config(cls: type[T], path: Path | None, overrides: list[str] | None = None) -> T:
    data = read_toml(path) if path is not None else {}
    return from_dict(cls, apply_overrides(data, list(overrides or [])))


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


def field_help(cls: type, prefix: str = "") -> list[tuple[str, str, str]]:
    """(dotted key, type, help) for every field, for ``recbias config --help``-style listings."""
    rows: list[tuple[str, str, str]] = []
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        key = f"{prefix}{f.name}"
        tp = hints[f.name]
        if dataclasses.is_dataclass(tp):
            rows.extend(field_help(tp, key + "."))
        else:
            rows.append((key, _type_name(tp), f.metadata.get("help", "")))
    return rows
