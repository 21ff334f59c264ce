"""Sample CSVs as the MSL/GDRT and D3/IGD repositories ship them (kind ``seqcsv``).

Each row is one sample. MSL/GDRT: ``user_id,item_ids,timestamp`` where ``item_ids`` is a
Python-literal list (history then target). D3/IGD: map ``source.columns.history`` to
``history_item_id`` and ``source.columns.item`` to ``item_id`` (a scalar target). Titles come from
an ``id2name`` JSON ``{id: title}`` or, for a ``.txt`` items file, a D3 ``info`` file of
``title<TAB>id`` lines.

The files are ``source.train/valid/test`` or ``train.csv``/``valid.csv``/``test.csv`` in
``source.path`` (``source.interactions`` names one file instead). With ``prepare.split = "given"``
the rows are the samples of the split their file names (``RawData.samples``). For the other split
methods the rows are turned back into one interaction sequence per user: rows of a user are taken
in timestamp order and each row contributes only the items that do not overlap the end of the
sequence rebuilt so far (the longest suffix/prefix match), so overlapping windows are not counted
twice. The row's target gets the row's timestamp; the other new items get timestamps one second
apart ending there, clamped so they never precede the user's previous interaction.
"""

from __future__ import annotations

import ast
import csv
from collections import defaultdict
from pathlib import Path
from typing import Any

import pandas as pd

from recbias.data.config import SourceConfig
from recbias.data.raw import (
    InputFiles,
    RawData,
    first_existing,
    make_interactions,
    make_items,
    require_dir,
)
from recbias.data.sources_io import (
    column_index,
    iter_lines,
    parse_timestamp,
    read_json_document,
)
from recbias.data.truncation import check_last_value
from recbias.errors import DataError

SPLIT_NAMES = ("train", "valid", "test")
_ITEM_FILES = ["id2name4Rec.json", "id2name.json"]

Row = tuple[str, int, int, list[str]]  # user, timestamp, global row order, history + target


def locate_seqcsv(cfg: SourceConfig, cache_dir: Path) -> InputFiles:
    """The sample CSVs with their split roles, and the titles file."""
    if cfg.interactions:
        csvs, roles = (Path(cfg.interactions),), ()
    else:
        csvs, roles = _split_files(cfg)
    if cfg.items:
        items = Path(cfg.items)
    else:
        items = first_existing(require_dir(cfg.path, cfg.kind), _ITEM_FILES, "id2name")
    return InputFiles(csvs, items, roles=roles)


def _split_files(cfg: SourceConfig) -> tuple[tuple[Path, ...], tuple[str, ...]]:
    explicit = {name: getattr(cfg, name) for name in SPLIT_NAMES if getattr(cfg, name)}
    directory = require_dir(cfg.path, cfg.kind) if len(explicit) < len(SPLIT_NAMES) else None
    found: dict[str, Path] = {}
    for name in SPLIT_NAMES:
        if name in explicit:
            found[name] = Path(explicit[name])
            if not found[name].is_file():
                raise DataError(f"{found[name]}: file not found (source.{name})")
        elif directory is not None and (directory / f"{name}.csv").is_file():
            found[name] = directory / f"{name}.csv"
    if not found:
        raise DataError(
            f"{directory}: no sample CSV; expected train.csv, valid.csv, test.csv "
            "(or source.train/valid/test)"
        )
    return tuple(found.values()), tuple(found)


def read_seqcsv(cfg: SourceConfig, files: InputFiles) -> RawData:
    """Samples per split file, rebuilt per-user interactions, titles from the items file."""
    assert files.items is not None
    rows: list[Row] = []
    split_of: list[str] = []
    file_rows: dict[str, int] = {}
    roles = files.roles or ("",) * len(files.interactions)
    for path, role in zip(files.interactions, roles, strict=True):
        read = _read_sample_rows(path, cfg.columns, start=len(rows))
        rows.extend(read)
        split_of.extend([role] * len(read))
        file_rows[path.name] = len(read)
    items = read_titles(files.items)
    file_rows[files.items.name] = len(items)
    samples = pd.DataFrame(
        {
            "split": pd.Series(split_of, dtype="str"),
            "user": pd.Series([r[0] for r in rows], dtype="str"),
            "items": pd.Series([r[3] for r in rows], dtype=object),
            "timestamp": pd.Series([r[1] for r in rows], dtype="int64"),
        }
    )
    interactions = _rebuild(rows)
    notes = {"sample_rows": len(rows), "rebuilt_interactions": len(interactions)}
    return RawData(interactions, items, samples=samples, file_rows=file_rows, notes=notes)


def _rebuild(rows: list[Row]) -> pd.DataFrame:
    by_user: dict[str, list[tuple[int, int, list[str]]]] = defaultdict(list)
    for user, stamp, order, ids in rows:
        by_user[user].append((stamp, order, ids))
    users: list[str] = []
    items: list[str] = []
    times: list[int] = []
    for user, user_rows in by_user.items():
        for item, stamp in merge_windows(sorted(user_rows, key=lambda r: (r[0], r[1]))):
            users.append(user)
            items.append(item)
            times.append(stamp)
    return make_interactions(users, items, times)


def _positions(header: list[str], columns: dict[str, str], path: Path) -> dict[str, int]:
    roles = ["user", "item", "timestamp", *(["history"] if "history" in columns else [])]
    return {r: column_index(header, columns[r], path, r) for r in roles}


def _read_sample_rows(path: Path, columns: dict[str, str], start: int) -> list[Row]:
    lines = iter_lines(path)
    _, header_text = next(lines, (0, ""))
    if not header_text:
        raise DataError(f"{path}: empty file; expected a header row and sample rows")
    header = next(csv.reader([header_text]))
    pos = _positions(header, columns, path)
    rows: list[Row] = []
    stamps: list[tuple[int, str]] = []
    for number, text in lines:
        fields = next(csv.reader([text]))
        if len(fields) != len(header):
            raise DataError(
                f"{path}:{number}: expected {len(header)} comma-separated fields, found {len(fields)}"
            )
        if "history" in pos:
            ids = [*_parse_id_list(fields[pos["history"]], path, number, 0), fields[pos["item"]]]
        else:
            ids = _parse_id_list(fields[pos["item"]], path, number, 1)
        stamp = parse_timestamp(fields[pos["timestamp"]], path, number)
        stamps.append((number, fields[pos["timestamp"]].strip()))
        rows.append((fields[pos["user"]], stamp, start + len(rows), ids))
    if not rows:
        raise DataError(f"{path}: no data rows after the header; expected at least one sample")
    check_last_value(path, stamps, "timestamp")
    return rows


def _parse_id_list(text: str, path: Path, number: int, minimum: int) -> list[str]:
    try:
        value = ast.literal_eval(text)
    except (ValueError, SyntaxError):
        value = None
    if not isinstance(value, list | tuple) or len(value) < minimum:
        raise DataError(
            f"{path}:{number}: item list {text[:60]!r} is not a Python list literal of at least "
            f"{minimum} ids; expected e.g. [12, 7, 31]"
        )
    return [str(v) for v in value]


def merge_windows(rows: list[tuple[int, int, list[str]]]) -> list[tuple[str, int]]:
    """Turn one user's time-sorted window rows into ``(item, timestamp)`` interactions."""
    sequence: list[str] = []
    out: list[tuple[str, int]] = []
    for stamp, _, ids in rows:
        new = ids[_overlap(sequence, ids) :]
        for offset, item in enumerate(new):
            synthetic = stamp - (len(new) - 1 - offset)
            out.append((item, max(synthetic, out[-1][1]) if out else synthetic))
        sequence.extend(new)
    return out


def _overlap(sequence: list[str], ids: list[str]) -> int:
    """Longest k < len(ids) with sequence[-k:] == ids[:k] (the target is always new)."""
    for k in range(min(len(sequence), len(ids) - 1), 0, -1):
        if sequence[-k:] == ids[:k]:
            return k
    return 0


def read_titles(path: Path) -> pd.DataFrame:
    """Items from an id2name JSON, or from a D3/IGD ``info`` file (``.txt``: title<TAB>id)."""
    return _read_info(path) if path.suffix == ".txt" else _read_id2name(path)


def _read_id2name(path: Path) -> pd.DataFrame:
    mapping = read_json_document(path)
    if not isinstance(mapping, dict):
        raise DataError(
            f"{path}: expected a JSON object {{id: title}}, got {type(mapping).__name__}"
        )
    titles: list[Any] = []
    for key, title in mapping.items():
        if not isinstance(title, str):
            raise DataError(f"{path}: title of id {key!r} is {title!r}; expected a string")
        titles.append(title)
    return make_items([str(k) for k in mapping], titles, {})


def _read_info(path: Path) -> pd.DataFrame:
    ids: list[str] = []
    titles: list[str] = []
    for number, text in iter_lines(path):
        title, sep, item = text.rpartition("\t")
        if not sep or not item.strip():
            raise DataError(f"{path}:{number}: expected 'title<TAB>id' (D3/IGD info file)")
        ids.append(item.strip())
        titles.append(title)
    if not ids:
        raise DataError(f"{path}: no item lines; expected 'title<TAB>id' lines")
    return make_items(ids, titles, {})
