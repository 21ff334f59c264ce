"""Declared constraints of config fields and the checks that name the full key.

A field declares its help and allowed values in its metadata, with :func:`spec`;
:func:`validate_config` walks a config (sections, lists and tables of sections), checks every
declared constraint and ``Literal`` annotation, then calls each section's ``check()`` (rules between
fields), prefixing the section's path to the key of any :class:`ConfigKeyError` it raises. Import
these names from :mod:`recbias.config`.
"""

from __future__ import annotations

import dataclasses
import functools
import types
import typing
from collections.abc import Callable, Iterator
from typing import Any, Literal, get_args, get_origin

from recbias.errors import ConfigError

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
        return ConfigKeyError(join_key(prefix, self.key), self.need, self.value)


def invalid(key: str, need: str, value: Any = _UNSET) -> ConfigKeyError:
    """The error a ``check()`` raises: ``invalid("heads", "must divide d_model (64)", 5)``."""
    return ConfigKeyError(key, need, value)


def join_key(prefix: str, key: str) -> str:
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
        key = join_key(prefix, f.name)
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
