"""Source registry: each kind registers how to locate its files and how to read them.

Locating is separate from reading so that the cache key (which fingerprints the input files) can be
computed without parsing anything.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from recbias.data.config import SourceConfig
from recbias.data.raw import InputFiles, RawData
from recbias.data.sources_amazon import locate_amazon, read_amazon
from recbias.data.sources_movielens import (
    locate_ml100k,
    locate_movielens,
    locate_recbole,
    read_movielens,
    read_recbole,
)
from recbias.data.sources_seqcsv import locate_seqcsv, read_seqcsv
from recbias.data.sources_table import locate_table, read_table
from recbias.errors import ConfigError, DataError

log = logging.getLogger(__name__)

Locate = Callable[[SourceConfig, Path], InputFiles]
Read = Callable[[SourceConfig, InputFiles], RawData]


@dataclass(frozen=True)
class SourceReader:
    """How one source kind finds its files and reads them into :class:`RawData`."""

    locate: Locate
    read: Read


SOURCES: dict[str, SourceReader] = {}


def register_source(kind: str, locate: Locate, read: Read) -> None:
    """Register the reader of a source kind (explicit, one line per kind)."""
    SOURCES[kind] = SourceReader(locate, read)


register_source("ml100k", locate_ml100k, read_recbole)
register_source("recbole", locate_recbole, read_recbole)
register_source("movielens", locate_movielens, read_movielens)
register_source("amazon2018", locate_amazon, read_amazon)
register_source("amazon2023", locate_amazon, read_amazon)
register_source("table", locate_table, read_table)
register_source("seqcsv", locate_seqcsv, read_seqcsv)


def _reader(kind: str) -> SourceReader:
    try:
        return SOURCES[kind]
    except KeyError:
        raise ConfigError(
            f"source.kind: unknown kind {kind!r}; expected one of {', '.join(SOURCES)}"
        ) from None


def locate_inputs(cfg: SourceConfig, cache_dir: Path) -> InputFiles:
    """The input files of a (resolved) source config; may fetch the embedded dataset."""
    return _reader(cfg.kind).locate(cfg, cache_dir)


def read_source(cfg: SourceConfig, files: InputFiles) -> RawData:
    """Read located files into the canonical frames."""
    raw = _reader(cfg.kind).read(cfg, files)
    if raw.interactions.empty:
        names = ", ".join(str(p) for p in files.interactions)
        raise DataError(f"{names}: no interactions read (header only?); expected data rows")
    if not raw.file_rows:
        raw.file_rows = {p.name: len(raw.interactions) for p in files.interactions[:1]}
        if files.items is not None:
            raw.file_rows[files.items.name] = len(raw.items)
    log.info(
        "read %s: %d interactions, %d item rows",
        cfg.kind,
        len(raw.interactions),
        len(raw.items),
    )
    return raw
