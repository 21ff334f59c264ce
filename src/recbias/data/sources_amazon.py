"""Amazon Reviews sources (McAuley lab), read as streamed JSON lines.

2018: ``{Category}_5.json[.gz]`` (reviewerID, asin, unixReviewTime in seconds), falling back to
``{Category}.json[.gz]`` like D3, plus ``meta_{Category}.json[.gz]`` (asin, title, ...).
2023: ``{Category}.jsonl[.gz]`` (user_id, parent_asin, timestamp in milliseconds) plus
``meta_{Category}.jsonl[.gz]`` (parent_asin, title, ...). Timestamps become unix seconds.
A metadata line without a title yields an item with an empty title (dropped by cleaning).
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
    return RawData(interactions, _read_meta(files.items, cfg.columns))


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


def _read_meta(path: Path, columns: dict[str, str]) -> pd.DataFrame:
    extras = extra_names(columns)
    ids: list[str] = []
    titles: list[str] = []
    values: dict[str, list[Any]] = {name: [] for name in extras}
    for number, record in iter_json_lines(path):
        ids.append(str(require_key(record, columns["item"], path, number, "item")))
        title = record.get(columns["title"])
        titles.append(title if isinstance(title, str) else "")
        for name in extras:
            values[name].append(record.get(columns[name]))
    return make_items(ids, titles, values)
