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

Why not pydantic: the configs are plain dataclasses used throughout the code (``dataclasses.replace``,
``asdict``); declaring ranges in field metadata kept them so, needed ~150 lines here instead of a
new dependency with its own multi-line error format, and lets ``recbias config`` document the same
metadata.

    cfg = load_config(RunConfig, Path("configs/quickstart.toml"), ["train.epochs=1"])
    write_resolved(cfg, run_dir / "config.toml")
"""

from __future__ import annotations

import dataclasses
import difflib
import functools
import os
import tomllib
import types
import typing
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Literal, TypeVar, get_args, get_origin

import tomli_w

from recbias.errors import ConfigError
from recbias.fsutil import write_text

T = TypeVar("T")

#: Metadata keys :func:`spec` writes; :func:`validate_config` checks the constraint ones.
CONSTRAINTS = ("ge", "gt", "le", "lt", "choices", "min_len", "unique")
METADATA_KEYS = ("help", "path", *CONSTRAINTS)
_UNSET: Any = object()


def spec(
    help: str,
    *,
    ge: float | None = None,
    gt: float | None = None,
    le: float | None = None,
    lt: float | None = None,
    choices: tuple[Any, ...] | Callable[[], tuple[Any, ...]] | None = None,
    min_len: int | None = None,
    unique: bool = False,
    path: bool = False,
) -> dict[str, Any]:
    """Field metadata: help text, bounds (of a number, or of every number of a list), ``choices``
    (a tuple, or a function returning one for registries), ``min_len`` (lists, tables, strings),
    ``unique`` (no repeated list entries) and ``path`` (resolve against the config's folder)."""
    given = dict(ge=ge, gt=gt, le=le, lt=lt, choices=choices, min_len=min_len)
    meta: dict[str, Any] = {"help": help, **{k: v for k, v in given.items() if v is not None}}
    if unique:
        meta["unique"] = True
    if path:
        meta["path"] = True
    return meta


class ConfigKeyError(ConfigError):
    """A bad value at ``key``, relative to the config section that raised it.

    ``str()`` is one line: ``config key 'KEY': NEED, got VALUE``; :meth:`under` prefixes the
    section's own path."""

    def __init__(self, key: str, need: str, value: Any = _UNSET) -> None:
        self.key, self.need, self.value = key, need, value
        got = "" if value is _UNSET else f", got {value!r}"
        super().__init__(f"config key '{key}': {need}{got}")

    def under(self, prefix: str) -> ConfigKeyError:
        return ConfigKeyError(_join(prefix, self.key), self.need, self.value)


def invalid(key: str, need: str, value: Any = _UNSET) -> ConfigKeyError:
    """The error a ``check()`` raises: ``invalid("heads", "must divide d_model (64)", 5)``."""
    return ConfigKeyError(key, need, value)


def _join(prefix: str, key: str) -> str:
    if not prefix:
        return key
    return f"{prefix}{key}" if key.startswith("[") else f"{prefix}.{key}"


class Config:
    """Base of the config dataclasses: ``validate()`` checks every declared constraint and every
    section's ``check()`` (cross-field rules; override it), naming keys relative to this object."""

    def validate(self, prefix: str = "") -> None:
        validate_config(self, prefix)

    def check(self) -> None:
        """Rules between fields; raise :func:`invalid` with a key relative to this section."""
        return None


def describe(meta: dict[str, Any]) -> str:
    """The allowed values of a field in words: ``>= 1``, ``in [0, 1)``, ``one of a, b``..."""
    parts = [_bounds(meta)]
    choices = meta.get("choices")
    if choices is not None:
        parts.append("one of " + ", ".join(map(str, choices() if callable(choices) else choices)))
    if meta.get("min_len"):
        n = meta["min_len"]
        parts.append("non-empty" if n == 1 else f"at least {n} entries")
    if meta.get("unique"):
        parts.append("no repeated entries")
    return ", ".join(p for p in parts if p)


def _bounds(meta: dict[str, Any]) -> str:
    low = ("[", meta["ge"]) if "ge" in meta else ("(", meta["gt"]) if "gt" in meta else None
    high = (meta["le"], "]") if "le" in meta else (meta["lt"], ")") if "lt" in meta else None
    if low and high:
        return f"in {low[0]}{low[1]}, {high[0]}{high[1]}"
    if low:
        return f"{'>=' if low[0] == '[' else '>'} {low[1]}"
    if high:
        return f"{'<=' if high[1] == ']' else '<'} {high[0]}"
    return ""


def _in_bounds(meta: dict[str, Any], x: Any) -> bool:
    return not (
        ("ge" in meta and x < meta["ge"])
        or ("gt" in meta and x <= meta["gt"])
        or ("le" in meta and x > meta["le"])
        or ("lt" in meta and x >= meta["lt"])
    )


def check_value(key: str, meta: dict[str, Any], value: Any) -> None:
    """Raise :class:`ConfigKeyError` if ``value`` breaks the constraints in ``meta``."""
    if value is None or not any(c in meta for c in CONSTRAINTS):
        return
    n = meta.get("min_len")
    if n is not None and len(value) < n:
        what = "a non-empty list" if isinstance(value, list) else "non-empty"
        raise ConfigKeyError(key, f"must be {what}" if n == 1 else f"needs >= {n} entries", value)
    if meta.get("unique") and len(set(value)) != len(value):
        raise ConfigKeyError(key, "must not repeat entries", value)
    items = list(enumerate(value)) if isinstance(value, list) else [(None, value)]
    choices = meta.get("choices")
    allowed = (choices() if callable(choices) else choices) if choices is not None else None
    for i, x in items:
        where = key if i is None else f"{key}[{i}]"
        if allowed is not None and x not in allowed:
            raise ConfigKeyError(where, "must be one of " + ", ".join(map(str, allowed)), x)
        if isinstance(x, int | float) and not _in_bounds(meta, x):
            raise ConfigKeyError(where, f"must be {_bounds(meta)}", x)


def _sections(key: str, value: Any) -> Iterator[tuple[str, Any]]:
    """Nested config objects of a field value, with their keys."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        yield key, value
    elif isinstance(value, list):
        yield from ((f"{key}[{i}]", v) for i, v in enumerate(value) if dataclasses.is_dataclass(v))
    elif isinstance(value, dict):
        yield from ((f"{key}.{k}", v) for k, v in value.items() if dataclasses.is_dataclass(v))


def _literal_choices(tp: Any) -> tuple[Any, ...] | None:
    """The allowed values of a ``Literal`` (or ``list[Literal]``, ``Literal | None``) annotation."""
    origin = get_origin(tp)
    if origin is Literal:
        return get_args(tp)
    if origin is list or origin in (types.UnionType, typing.Union):
        found = [c for a in get_args(tp) if (c := _literal_choices(a)) is not None]
        return found[0] if len(found) == 1 else None
    return None


@functools.cache
def rules(cls: type) -> dict[str, dict[str, Any]]:
    """Each field's metadata, with the values of a ``Literal`` annotation as ``choices``."""
    hints = typing.get_type_hints(cls)
    rules = {}
    for f in dataclasses.fields(cls):
        literal = _literal_choices(hints[f.name])
        extra = {"choices": literal} if literal is not None and "choices" not in f.metadata else {}
        rules[f.name] = {**f.metadata, **extra}
    return rules


def validate_config(obj: Any, prefix: str = "") -> None:
    """Check every field constraint of ``obj`` and its sections, then each section's ``check()``
    (after its own sections); errors name the key under ``prefix``."""
    meta = rules(type(obj))
    for f in dataclasses.fields(obj):
        key = _join(prefix, f.name)
        value = getattr(obj, f.name)
        check_value(key, meta[f.name], value)
        for sub_key, sub in _sections(key, value):
            validate_config(sub, sub_key)
    hook = getattr(obj, "check", None)
    if callable(hook):
        try:
            hook()
        except ConfigKeyError as exc:
            raise exc.under(prefix) from None


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
        dotted = _join(prefix, key)
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
