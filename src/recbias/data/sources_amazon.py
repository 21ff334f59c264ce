"""Amazon Reviews sources (McAuley lab), read as streamed JSON lines.

2018: ``{Category}_5.json[.gz]`` (reviewerID, asin, unixReviewTime in seconds), falling back to
``{Category}.json[.gz]`` like D3, plus ``meta_{Category}.json[.gz]`` (asin, title, ...).
2023: ``{Category}.jsonl[.gz]`` (user_id, parent_asin, timestamp in milliseconds) plus
``meta_{Category}.jsonl[.gz]`` (parent_asin, title, ...). Timestamps become unix seconds.
A metadata record without the title field yields an item with an empty title (dropped by cleaning,
counted in the card); a metadata file where no record has the field is an error naming it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd

from recbias.data.config import SourceConfig
from recbias.data.raw import (
    InputFiles,
    RawData,
    extra_names,
    first_existing,
    make_interactions,
    make_items,
    require_dir,
)
from recbias.data.sources_io import iter_json_lines, parse_timestamp, require_key
from recbias.errors import DataError

_NAMES = {
    "amazon2018": (("{c}_5.json", "{c}.json"), ("meta_{c}.json",)),
    "amazon2023": (("{c}.jsonl",), ("meta_{c}.jsonl",)),
}
_TIME_SCALE = {"amazon2018": 1, "amazon2023": 1000}


def locate_amazon(cfg: SourceConfig, cache_dir: Path) -> InputFiles:
    """Explicit ``interactions``/``items`` files, else the standard names for ``category``."""
    inter_names, meta_names = _NAMES[cfg.kind]
    inter = Path(cfg.interactions) if cfg.interactions else None
    items = Path(cfg.items) if cfg.items else None
    if inter is None or items is None:
        directory = require_dir(cfg.path, cfg.kind)
        inter = inter or first_existing(directory, _candidates(inter_names, cfg), "reviews")
        items = items or first_existing(directory, _candidates(meta_names, cfg), "metadata")
    return InputFiles((inter,), items)


def _candidates(patterns: tuple[str, ...], cfg: SourceConfig) -> list[str]:
    names = [p.format(c=cfg.category) for p in patterns]
    return [variant for name in names for variant in (name, f"{name}.gz")]


def read_amazon(cfg: SourceConfig, files: InputFiles) -> RawData:
    """Stream the reviews and the metadata into the canonical frames."""
    assert files.items is not None
    interactions = _read_reviews(files.interactions[0], cfg.columns, _TIME_SCALE[cfg.kind])
    items, untitled = _read_meta(files.items, cfg.columns)
    rows = {files.interactions[0].name: len(interactions), files.items.name: len(items)}
    notes = {"meta_records_without_title_field": untitled}
    return RawData(interactions, items, file_rows=rows, notes=notes)


def _read_reviews(path: Path, columns: dict[str, str], scale: int) -> pd.DataFrame:
    users: list[str] = []
    items: list[str] = []
    times: list[int] = []
    for number, record in iter_json_lines(path):
        users.append(str(require_key(record, columns["user"], path, number, "user")))
        items.append(str(require_key(record, columns["item"], path, number, "item")))
        stamp = require_key(record, columns["timestamp"], path, number, "timestamp")
        times.append(parse_timestamp(stamp, path, number, scale))
    return make_interactions(users, items, times)


def _read_meta(path: Path, columns: dict[str, str]) -> tuple[pd.DataFrame, int]:
    """Items of the metadata file and the number of records without the title field."""
    extras = extra_names(columns)
    ids: list[str] = []
    titles: list[str] = []
    values: dict[str, list[Any]] = {name: [] for name in extras}
    untitled = 0
    first: tuple[int, dict[str, Any]] | None = None
    for number, record in iter_json_lines(path):
        first = first or (number, record)
        ids.append(str(require_key(record, columns["item"], path, number, "item")))
        title = record.get(columns["title"])
        untitled += columns["title"] not in record
        titles.append(title if isinstance(title, str) else "")
        for name in extras:
            values[name].append(record.get(columns[name]))
    if first is None:
        raise DataError(f"{path}: no metadata records; expected one JSON object per line")
    if untitled == len(ids):
        raise DataError(
            f"{path}: no record has the field {columns['title']!r} (the title column, see "
            f"source.columns); fields of line {first[0]}: {', '.join(sorted(first[1]))}"
        )
    return make_items(ids, titles, values), untitled
