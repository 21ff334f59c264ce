"""The canonical in-memory form every source reader returns.

``RawData.interactions``: columns ``user`` (str), ``item`` (str raw id), ``timestamp`` (int64 unix
seconds), rows in file order (the row order breaks timestamp ties later).
``RawData.items``: columns ``item`` (str raw id), ``title`` (str, uncleaned) and optional extra
columns: ``genres`` holds lists of str, any other extra (``year``, ...) holds str.
``RawData.samples`` (sources whose rows are samples, e.g. seqcsv): ``split`` (the role of the file
it came from), ``user``, ``items`` (list of str raw ids, history then target), ``timestamp``.
``RawData.file_rows``: data rows read per input file name, for the dataset card; ``notes``: other
facts a reader found (e.g. metadata records without a title).
When ``InputFiles.roles`` is set (split files), ``interactions`` also has a ``split`` column.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from recbias.errors import ConfigError, DataError

CORE_NAMES = ("user", "item", "timestamp", "title")


@dataclass(frozen=True)
class InputFiles:
    """The files a source reads; ``checksums`` holds known sha256 by file name (embedded data)."""

    interactions: tuple[Path, ...]
    items: Path | None
    checksums: dict[str, str] = field(default_factory=dict)
    roles: tuple[str, ...] = ()  # split of each interactions file (train/valid/test) when given

    def all(self) -> list[Path]:
        """Every input file, interactions first."""
        return [*self.interactions, *([self.items] if self.items else [])]


@dataclass
class RawData:
    """Interactions and item metadata of one source, before any cleaning."""

    interactions: pd.DataFrame
    items: pd.DataFrame
    samples: pd.DataFrame | None = None
    file_rows: dict[str, int] = field(default_factory=dict)
    notes: dict[str, Any] = field(default_factory=dict)  # reader facts for the card


def make_interactions(
    users: Sequence[str], items: Sequence[str], times: Sequence[int]
) -> pd.DataFrame:
    """Build the canonical interactions frame from parallel column lists."""
    return pd.DataFrame(
        {
            "user": pd.Series(users, dtype="str"),
            "item": pd.Series(items, dtype="str"),
            "timestamp": np.asarray(times, dtype=np.int64),
        }
    )


def make_items(
    ids: Sequence[str], titles: Sequence[str], extras: dict[str, list[Any]]
) -> pd.DataFrame:
    """Build the canonical items frame; ``genres`` stays a list column, other extras become str."""
    frame = pd.DataFrame(
        {"item": pd.Series(ids, dtype="str"), "title": pd.Series(titles, dtype="str")}
    )
    for name, values in extras.items():
        if name == "genres":
            frame[name] = pd.Series([as_genres(v) for v in values], dtype=object)
        else:
            frame[name] = pd.Series([as_text(v) for v in values], dtype="str")
    return frame


def _missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def as_text(value: Any) -> str:
    """Render a metadata value as text: None/NaN -> '', lists joined by ', '."""
    if _missing(value):
        return ""
    if isinstance(value, list | tuple):
        return ", ".join(as_text(v) for v in value)
    return str(value)


def as_genres(value: Any, separator: str | None = None) -> list[str]:
    """Normalise a genres value (list, or string split on ``separator``/whitespace) to list[str]."""
    if _missing(value):
        return []
    if isinstance(value, str):
        parts: Iterable[Any] = value.split(separator) if separator else value.split()
    elif isinstance(value, Iterable):
        parts = value
    else:
        parts = [value]
    return [str(p).strip() for p in parts if str(p).strip()]


def extra_names(columns: dict[str, str]) -> list[str]:
    """Our names of the extra item columns in a mapping (everything but the core four)."""
    return [name for name in columns if name not in CORE_NAMES]


def first_existing(directory: Path, names: Sequence[str], role: str) -> Path:
    """The first of ``names`` present in ``directory``; DataError listing the candidates."""
    if not directory.is_dir():
        raise DataError(f"{directory}: not a directory (source.path); expected the {role} folder")
    for name in names:
        candidate = directory / name
        if candidate.is_file():
            return candidate
    raise DataError(f"{directory}: no {role} file; expected one of {', '.join(names)}")


def require_dir(path: str | None, kind: str) -> Path:
    """``source.path`` as an existing directory; ConfigError when unset, DataError when absent."""
    if not path:
        raise ConfigError(f"source.path: required for kind {kind!r} (a directory of source files)")
    directory = Path(path)
    if not directory.is_dir():
        raise DataError(f"{directory}: not a directory (source.path for kind {kind!r})")
    return directory
