"""MovieLens sources: RecBole atomic files (incl. the embedded ML-100K) and raw GroupLens files.

Raw GroupLens: ML-100K ``u.data`` (tab: user, item, rating, time) + ``u.item`` (``|``-separated,
latin-1, 19 genre flags at the end), or ML-1M ``ratings.dat`` + ``movies.dat`` (``::``-separated,
latin-1 titles). Titles are kept as in the file (with their "(1995)"); the year goes to ``year``.
Ratings are ignored: every rating counts as an interaction.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pandas as pd

from recbias.data.config import SourceConfig
from recbias.data.embedded import FILE_SHA256, ensure_ml100k, local_ml100k_dir
from recbias.data.raw import (
    InputFiles,
    RawData,
    as_genres,
    extra_names,
    first_existing,
    make_interactions,
    make_items,
    require_dir,
)
from recbias.data.sources_io import column_index, iter_fields, iter_lines, parse_timestamp
from recbias.data.truncation import check_last_value
from recbias.errors import DataError

ML100K_GENRES = (
    "unknown", "Action", "Adventure", "Animation", "Children's", "Comedy", "Crime", "Documentary",
    "Drama", "Fantasy", "Film-Noir", "Horror", "Musical", "Mystery", "Romance", "Sci-Fi",
    "Thriller", "War", "Western",
)  # fmt: skip
_YEAR_IN_TITLE = re.compile(r"\((\d{4})\)\s*$")


# --- RecBole atomic files ------------------------------------------------------------------------


def locate_recbole(cfg: SourceConfig, cache_dir: Path) -> InputFiles:
    """``{name}.inter``/``{name}.item`` in ``path`` (name = folder name), or the explicit files."""
    if cfg.interactions and cfg.items:
        return InputFiles((Path(cfg.interactions),), Path(cfg.items))
    directory = require_dir(cfg.path, cfg.kind)
    stem = directory.name
    inter = (
        Path(cfg.interactions)
        if cfg.interactions
        else first_existing(directory, [f"{stem}.inter", f"{stem}.inter.gz"], "interactions")
    )
    items = (
        Path(cfg.items)
        if cfg.items
        else first_existing(directory, [f"{stem}.item", f"{stem}.item.gz"], "items")
    )
    return InputFiles((inter,), items)


def locate_ml100k(cfg: SourceConfig, cache_dir: Path) -> InputFiles:
    """Local files (``source.path`` or ``$RECBIAS_ML100K_DIR``) or the verified embedded copy."""
    explicit = Path(cfg.path) if cfg.path else local_ml100k_dir()
    directory = explicit if explicit is not None else ensure_ml100k(cache_dir)
    inter = first_existing(directory, ["ml-100k.inter"], "ML-100K interactions")
    items = first_existing(directory, ["ml-100k.item"], "ML-100K items")
    checksums = {} if explicit is not None else dict(FILE_SHA256)
    return InputFiles((inter,), items, checksums)


def read_recbole(cfg: SourceConfig, files: InputFiles) -> RawData:
    """Read atomic files: tab-separated, header of ``name:type`` fields, token_seq = spaces."""
    assert files.items is not None
    return RawData(
        _read_inter(files.interactions[0], cfg.columns), _read_item(files.items, cfg.columns)
    )


def _header(path: Path) -> tuple[int, list[str]]:
    for number, text in iter_lines(path):
        return number, text.split("\t")
    raise DataError(f"{path}: empty file; expected a header line of name:type fields")


def _read_inter(path: Path, columns: dict[str, str]) -> pd.DataFrame:
    _, header = _header(path)
    pos = [
        column_index(header, columns[role], path, role) for role in ("user", "item", "timestamp")
    ]
    users: list[str] = []
    items: list[str] = []
    times: list[int] = []
    raw_times: list[tuple[int, str]] = []
    for number, fields in iter_fields(path, "\t", len(header), header=True):
        users.append(fields[pos[0]])
        items.append(fields[pos[1]])
        times.append(parse_timestamp(fields[pos[2]], path, number))
        raw_times.append((number, fields[pos[2]].strip()))
    check_last_value(path, raw_times, "timestamp")
    return make_interactions(users, items, times)


def _read_item(path: Path, columns: dict[str, str]) -> pd.DataFrame:
    _, header = _header(path)
    extras = extra_names(columns)
    roles = ["item", "title", *extras]
    pos = {role: column_index(header, columns[role], path, role) for role in roles}
    values: dict[str, list[Any]] = {role: [] for role in roles}
    for _, fields in iter_fields(path, "\t", len(header), header=True):
        for role in roles:
            value = fields[pos[role]]
            values[role].append(as_genres(value) if role == "genres" else value)
    return make_items(values["item"], values["title"], {e: values[e] for e in extras})


# --- raw GroupLens files -------------------------------------------------------------------------


def locate_movielens(cfg: SourceConfig, cache_dir: Path) -> InputFiles:
    """ML-100K (``u.data``/``u.item``) or ML-1M (``ratings.dat``/``movies.dat``) in ``path``."""
    directory = require_dir(cfg.path, cfg.kind)
    if (directory / "u.data").is_file():
        return InputFiles((directory / "u.data",), first_existing(directory, ["u.item"], "items"))
    if (directory / "ratings.dat").is_file():
        ratings = directory / "ratings.dat"
        return InputFiles((ratings,), first_existing(directory, ["movies.dat"], "items"))
    raise DataError(
        f"{directory}: no MovieLens ratings; expected u.data (ML-100K) or ratings.dat (ML-1M)"
    )


def read_movielens(cfg: SourceConfig, files: InputFiles) -> RawData:
    """Read raw GroupLens files of either layout."""
    assert files.items is not None
    ratings = files.interactions[0]
    if ratings.name == "u.data":
        return RawData(_read_ratings(ratings, "\t"), _read_u_item(files.items))
    return RawData(_read_ratings(ratings, "::"), _read_movies_dat(files.items))


def _read_ratings(path: Path, sep: str) -> pd.DataFrame:
    users: list[str] = []
    items: list[str] = []
    times: list[int] = []
    raw_times: list[tuple[int, str]] = []
    for number, fields in iter_fields(path, sep, 4):
        users.append(fields[0])
        items.append(fields[1])
        times.append(parse_timestamp(fields[3], path, number))
        raw_times.append((number, fields[3].strip()))
    check_last_value(path, raw_times, "timestamp")
    return make_interactions(users, items, times)


def _title_year(title: str, fallback: str = "") -> str:
    found = _YEAR_IN_TITLE.search(title)
    if found:
        return found.group(1)
    return fallback[-4:] if fallback[-4:].isdigit() else ""


def _read_u_item(path: Path) -> pd.DataFrame:
    # u.item is latin-1 encoded (e.g. "Misérables"); the only file where latin-1 is expected.
    ids, titles, years, genres = [], [], [], []
    for _, fields in iter_fields(path, "|", 5 + len(ML100K_GENRES), encoding="latin-1"):
        ids.append(fields[0])
        titles.append(fields[1])
        years.append(_title_year(fields[1], fields[2]))
        flags = fields[5:]
        genres.append([g for g, flag in zip(ML100K_GENRES, flags, strict=True) if flag == "1"])
    return make_items(ids, titles, {"year": years, "genres": genres})


def _read_movies_dat(path: Path) -> pd.DataFrame:
    ids, titles, years, genres = [], [], [], []
    for _, fields in iter_fields(path, "::", 3, encoding="latin-1"):
        ids.append(fields[0])
        titles.append(fields[1])
        years.append(_title_year(fields[1]))
        genres.append(as_genres(fields[2], "|"))
    return make_items(ids, titles, {"year": years, "genres": genres})
