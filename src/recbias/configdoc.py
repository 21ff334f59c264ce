"""Configs users can read: ``recbias config show|explain|docs``, from the fields' own metadata.

Every config kind the CLI loads is registered in :data:`KINDS`. :func:`field_docs` lists each key of
a kind (dotted, as ``--set`` takes it) with its type, its default *in that kind* (a section's
defaults may differ between kinds), its allowed values and its help; :func:`render_toml` writes a
loaded config back as TOML with that help as comments; :func:`markdown` is
``docs/configuration.md``.

    cfg = load_kind("run", Path("configs/quickstart.toml"), ["train.epochs=1"])
    print(render_toml(cfg))
    print(explain("run", "train.epochs"))
"""

from __future__ import annotations

import dataclasses
import difflib
import importlib
import textwrap
import types
import typing
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, get_args, get_origin

import tomli_w

from recbias.config import describe, load_config, rules
from recbias.errors import ConfigError

#: kind -> (config class, loader, commands that read it, shipped example).
KINDS: dict[str, tuple[str, str | None, str, str]] = {
    "run": (
        "recbias.llmrec.config:RunConfig",
        "recbias.workflow:load_run_config",
        "run, prepare, train, recommend",
        "configs/quickstart.toml",
    ),
    "compare": (
        "recbias.compare.config:CompareConfig",
        "recbias.compare.config:load_compare_config",
        "compare",
        "configs/quickstart_compare.toml",
    ),
    "audit": ("recbias.audit.config:AuditConfig", None, "audit --config", "configs/audit.toml"),
    "seqrec": (
        "recbias.baselines.loo:SeqRecConfig",
        None,
        "seqrec",
        "configs/seqrec_ml100k.toml",
    ),
    "genrec": (
        "recbias.genrec.config:GenRecRunConfig",
        None,
        "genrec",
        "configs/genrec_ml100k.toml",
    ),
    "simulate": (
        "recbias.simulate.config:SimulationConfig",
        None,
        "simulate",
        "configs/simulate_mf.toml",
    ),
    **{
        f"probe-{channel}": (
            f"recbias.probes.config:{cls}",
            None,
            f"probe {channel}",
            f"configs/probe_{channel}.toml",
        )
        for channel, cls in (
            ("positional", "PositionalProbeConfig"),
            ("popularity", "PopularityProbeConfig"),
            ("latent", "LatentProbeConfig"),
            ("synthetic", "SyntheticProbeConfig"),
        )
    },
}


def _import(target: str) -> Any:
    module, name = target.split(":")
    return getattr(importlib.import_module(module), name)


def config_class(kind: str) -> type:
    if kind not in KINDS:
        raise ConfigError(f"config kind '{kind}': expected one of {', '.join(KINDS)}")
    return _import(KINDS[kind][0])


def infer_kind(data: dict[str, Any]) -> str:
    """The kind whose top-level keys hold all of ``data``'s; ``run`` when several fit."""
    keys = set(data)
    fits = [k for k in KINDS if keys <= {f.name for f in dataclasses.fields(config_class(k))}]
    if len(fits) == 1:
        return fits[0]
    if "run" in fits:
        return "run"
    raise ConfigError(
        f"cannot tell the config kind from its top-level keys {sorted(keys)}"
        + (f" (it fits {', '.join(fits)})" if fits else "")
        + f"; pass --kind, one of {', '.join(KINDS)}"
    )


def load_kind(kind: str, path: Path | None, overrides: list[str] | None = None) -> Any:
    """Load ``path`` as ``kind`` exactly as the kind's command does (``--set`` included)."""
    cls, loader = config_class(kind), KINDS[kind][1]
    if loader is not None and path is not None:
        return _import(loader)(path, list(overrides or []))
    return load_config(cls, path, overrides)


@dataclass(frozen=True)
class FieldDoc:
    key: str
    type: str
    default: Any  # dataclasses.MISSING = required
    allowed: str
    help: str
    path: bool


def _section(tp: Any) -> tuple[str, type] | None:
    """('', X) for a section X, ('[]', X) for list[X], ('.<name>', X) for dict[str, X]."""
    if dataclasses.is_dataclass(tp):
        return "", tp  # type: ignore[return-value]
    args = get_args(tp)
    if get_origin(tp) is list and args and dataclasses.is_dataclass(args[0]):
        return "[]", args[0]
    if get_origin(tp) is dict and len(args) == 2 and dataclasses.is_dataclass(args[1]):
        return ".<name>", args[1]
    return None


def _defaults(cls: type) -> Any:
    """A default instance of ``cls``, or None when it has required fields."""
    try:
        return cls()
    except TypeError:
        return None


def _default_of(f: dataclasses.Field, obj: Any) -> Any:
    if obj is not None:
        return getattr(obj, f.name)
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return dataclasses.MISSING


def type_text(tp: Any) -> str:
    """A short type for people: ``int``, ``list[str]``, ``float or unset``, ``str`` (Literal)."""
    origin = get_origin(tp)
    if origin is Literal:
        return type(get_args(tp)[0]).__name__
    if origin in (types.UnionType, typing.Union):
        parts = [type_text(a) for a in get_args(tp) if a is not type(None)]
        return " or ".join(parts) + (" or unset" if type(None) in get_args(tp) else "")
    if origin is not None:
        return f"{origin.__name__}[{', '.join(type_text(a) for a in get_args(tp))}]"
    if tp is Any:
        return "any"
    return "table" if dataclasses.is_dataclass(tp) else getattr(tp, "__name__", str(tp))


def sections(cls: type, obj: Any = None, prefix: str = "") -> Iterator[tuple[str, type, Any]]:
    """(key, class, default instance) of ``cls`` itself and of every section below it."""
    obj = obj if obj is not None else _defaults(cls)
    yield prefix, cls, obj
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        found = _section(hints[f.name])
        if found is None:
            continue
        suffix, sub = found
        value = _default_of(f, obj) if not suffix else None
        yield from sections(sub, value if value is not dataclasses.MISSING else None,
                            f"{prefix}{f.name}{suffix}.")  # fmt: skip


def own_fields(cls: type, obj: Any, prefix: str) -> list[FieldDoc]:
    """The non-section fields of one section."""
    hints, meta = typing.get_type_hints(cls), rules(cls)
    return [
        FieldDoc(
            key=f"{prefix}{f.name}",
            type=type_text(hints[f.name]),
            default=_default_of(f, obj),
            allowed=describe(meta[f.name]),
            help=meta[f.name].get("help", ""),
            path=bool(meta[f.name].get("path")),
        )
        for f in dataclasses.fields(cls)
        if _section(hints[f.name]) is None
    ]


def field_docs(cls: type) -> list[FieldDoc]:
    """Every key of the config class ``cls``, sections included, in declaration order."""
    return [doc for key, sub, obj in sections(cls) for doc in own_fields(sub, obj, key)]


def toml_value(value: Any) -> str:
    """``value`` as a TOML value on one line (tables inline)."""
    if isinstance(value, dict):
        items = ", ".join(f"{toml_key(k)} = {toml_value(v)}" for k, v in value.items())
        return "{ " + items + " }" if items else "{}"
    if isinstance(value, list | tuple):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    return tomli_w.dumps({"v": value})[4:].rstrip("\n")


def toml_key(key: str) -> str:
    bare = key and all(c.isascii() and (c.isalnum() or c in "_-") for c in key)
    return key if bare else toml_value(key)


def default_text(doc: FieldDoc) -> str:
    if doc.default is dataclasses.MISSING:
        return "required"
    return "unset" if doc.default is None else toml_value(doc.default)


def resolve_key(cls: type, key: str) -> tuple[str, type, Any, str | None]:
    """(section key, section class, default instance, field name or None) of a dotted ``key``;
    list indices (``methods[0]``) and table names (``compare.eps``) are accepted."""
    known = {key for key, _, _ in sections(cls)} | {d.key for d in field_docs(cls)}
    canon = _canonical(cls, key)
    if canon is None:
        close = difflib.get_close_matches(key, sorted(known), n=1)
        hint = f" (did you mean '{close[0]}'?)" if close else ""
        raise ConfigError(f"unknown config key '{key}'{hint}")
    for prefix, sub, obj in sections(cls):
        if canon + "." == prefix:
            return prefix, sub, obj, None
        if canon.startswith(prefix) and "." not in canon[len(prefix) :]:
            name = canon[len(prefix) :]
            if any(d.key == canon for d in own_fields(sub, obj, prefix)):
                return prefix, sub, obj, name
    raise ConfigError(f"unknown config key '{key}'")  # pragma: no cover - _canonical checked it


def _canonical(cls: type, key: str) -> str | None:
    """``key`` spelled as :func:`sections` spells it (``methods[].name``), or None if unknown."""
    out, parts = "", key.replace("[", ".[").split(".")
    i = 0
    while i < len(parts):
        part = parts[i]
        fields = {f.name: f for f in dataclasses.fields(cls)}
        if part not in fields:
            return None
        found = _section(typing.get_type_hints(cls)[part])
        out += part
        i += 1
        if found is None:
            return out if i == len(parts) else None
        suffix, cls = found
        if suffix == "[]":
            i += i < len(parts) and parts[i].startswith("[")
        elif suffix and i < len(parts):
            i += 1
        out += suffix
        if i == len(parts):
            return out
        out += "."
    return out


def explain(kind: str, key: str) -> str:
    """Type, default, allowed values and help of one key, or the keys of one section."""
    cls = config_class(kind)
    try:
        prefix, sub, obj, name = resolve_key(cls, key)
    except ConfigError as exc:
        others = [k for k in KINDS if k != kind and _canonical(config_class(k), key) is not None]
        hint = f"; a key of the {', '.join(others)} config (--kind {others[0]})" if others else ""
        text = str(exc).replace("unknown config key", f"unknown {kind} config key", 1)
        raise ConfigError(text + hint) from None
    docs = own_fields(sub, obj, prefix)
    if name is None:
        lines = [f"[{prefix.rstrip('.')}] ({kind} config, {sub.__name__}): {len(docs)} keys"]
        lines += [f"  {d.key} = {default_text(d)}    # {_comment(d)}" for d in docs]
        return "\n".join(lines)
    doc = next(d for d in docs if d.key.endswith("." + name) or d.key == name)
    rows = [
        ("key", doc.key),
        ("kind", f"{kind} ({cls.__name__})"),
        ("type", doc.type),
        ("default", default_text(doc)),
        ("allowed", doc.allowed or "any value of the type"),
        ("help", doc.help or "-"),
    ]
    if doc.path:
        rows.append(("path", "relative to the config file's folder (--set: current directory)"))
    return "\n".join(f"{label:<8} {value}" for label, value in rows)


def _comment(doc: FieldDoc) -> str:
    text = doc.help or ""
    if doc.allowed:
        text += f" [{doc.allowed}]"
    if doc.path:
        text += " (path: relative to this file's folder)"
    return text.strip()


def render_toml(cfg: Any, title: str = "") -> str:
    """The config as TOML, every key written out with its help as a comment above it."""
    lines = [f"# {line}" for line in title.splitlines()]
    _table(cfg, "", lines)
    return "\n".join(lines).strip("\n") + "\n"


def _table(obj: Any, prefix: str, lines: list[str]) -> None:
    hints = typing.get_type_hints(type(obj))
    later: list[tuple[str, str, Any]] = []
    for doc, f in zip(own_fields(type(obj), obj, ""), _plain(obj, hints), strict=True):
        lines += ["# " + t for t in textwrap.wrap(_comment(doc), 98)]
        value = getattr(obj, f.name)
        lines.append(
            f"# {doc.key} = (unset)" if value is None else f"{doc.key} = {toml_value(value)}"
        )
    for f in dataclasses.fields(obj):
        if _section(hints[f.name]) is not None:
            later.append((f.name, f.metadata.get("help", ""), getattr(obj, f.name)))
    for name, helptext, value in later:
        key = f"{prefix}{toml_key(name)}"
        note = [""] + ["# " + t for t in textwrap.wrap(helptext, 98)]
        if isinstance(value, list):
            for item in value:
                lines += [*note, f"[[{key}]]"]
                _table(item, key + ".", lines)
        elif isinstance(value, dict):
            for sub_name, item in value.items():
                lines += [*note, f"[{key}.{toml_key(sub_name)}]"]
                _table(item, f"{key}.{toml_key(sub_name)}.", lines)
        else:
            lines += [*note, f"[{key}]"]
            _table(value, key + ".", lines)


def _plain(obj: Any, hints: dict[str, Any]) -> list[dataclasses.Field]:
    return [f for f in dataclasses.fields(obj) if _section(hints[f.name]) is None]


DOC_INTRO = """\
# Configuration reference

<!-- Generated by `recbias config docs` from the config classes; do not edit by hand.
     tests/test_config_docs.py fails when this file is stale. -->

Every recbias command reads one TOML file. Each key below can be set in the file or on the
command line with `--set key.path=value` (the value is read as TOML: `--set train.lr=2e-4`,
`--set eval.ks=[5,10]`, `--set name=x`). A key that is not listed, a value of the wrong type or out
of its allowed range stops the command before any work with one line naming the full key and what
it expects, e.g. `config key 'data.prepare.kcore': must be >= 0, got -1`.

Keys marked *path* are input files or folders: a relative path written in a config file is read
relative to **that file's folder** (so a config keeps working when copied elsewhere, together with
the files it names); a relative path given with `--set` is read relative to the current directory.
Output locations (`output_dir`, `cache_dir`) are relative to the current directory.

To see a config with every default and its help, or one key:

    recbias config show configs/quickstart.toml --set train.epochs=1
    recbias config explain train.objective.gdrt.tau
    recbias config explain world.n_items --kind simulate

`show` infers the kind from the file's top-level keys (or takes `--kind`); `explain` reads the run
config unless `--kind` names another.

| kind | read by | example |
|---|---|---|
"""


def markdown() -> str:
    """``docs/configuration.md``: one table of keys per config kind."""
    out = [DOC_INTRO.rstrip("\n")]
    out += [f"| `{k}` | `recbias {v[2]}` | `{v[3]}` |" for k, v in KINDS.items()]
    seen: dict[type, tuple[str, str, Any]] = {}
    for kind in KINDS:
        cls = config_class(kind)
        out += ["", f"## {kind}", "", f"`{cls.__name__}`, read by `recbias {KINDS[kind][2]}`.", ""]
        out += ["| key | type | default | allowed | description |", "|---|---|---|---|---|"]
        skip: list[str] = []
        for prefix, sub, obj in sections(cls):
            if any(prefix.startswith(s) for s in skip):
                continue
            first = seen.get(sub)
            if prefix and first is not None and first[2] == obj and obj is not None:
                where = f"`{first[1]}*` of `{first[0]}`" if first[1] else f"the `{first[0]}` config"
                out.append(f"| `{prefix}*` | table | | | same keys and defaults as {where} |")
                skip.append(prefix)
                continue
            seen.setdefault(sub, (kind, prefix, obj))
            out += [_row(d) for d in own_fields(sub, obj, prefix)]
    return "\n".join(out) + "\n"


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _row(doc: FieldDoc) -> str:
    default = _cell(default_text(doc))
    helptext = doc.help + (" *path*" if doc.path else "")
    return (
        f"| `{doc.key}` | {_cell(doc.type)} | `{default}` | {_cell(doc.allowed)} | "
        f"{_cell(helptext)} |"
    )
