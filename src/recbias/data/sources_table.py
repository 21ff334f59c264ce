"""Generic tables (CSV/TSV/Parquet) and the MSL/GDRT sequence CSV.

``table``: ``source.interactions`` (user, item, timestamp columns; numeric unix seconds or a
Parquet timestamp column) and optionally ``source.items`` (item, title, extras). Without an items
file, titles and extras come from the interactions file (first row of each item).

``seqcsv``: rows ``user_id,item_ids,timestamp`` where ``item_ids`` is a Python-literal list (last =
target, rest = history) plus an ``id2name`` JSON {id: title}. The rows are already sliding-window
samples, so they are turned back into one interaction sequence per user: rows of a user are taken
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

import numpy as np
import pandas as pd
import pyarrow.parquet as pq

from recbias.data.config import SourceConfig
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
from recbias.data.sources_io import (
    column_index,
    iter_lines,
    parse_timestamp,
    raise_decode_error,
    read_json_document,
)
from recbias.errors import ConfigError, DataError

# --- generic tables ------------------------------------------------------------------------------


def locate_table(cfg: SourceConfig, cache_dir: Path) -> InputFiles:
    """``source.interactions`` (required) and ``source.items`` (optional)."""
    if not cfg.interactions:
        raise ConfigError("source.interactions: required for kind 'table' (a CSV/TSV/Parquet file)")
    return InputFiles((Path(cfg.interactions),), Path(cfg.items) if cfg.items else None)


def read_table(cfg: SourceConfig, files: InputFiles) -> RawData:
    """Read the table(s), mapping columns by ``source.columns``."""
    cols = cfg.columns
    item_roles = ["item", "title", *extra_names(cols)]
    inter_roles = ["user", "item", "timestamp"]
    if files.items is None:
        inter_roles += item_roles[1:]
    path = files.interactions[0]
    frame = _load(path, {role: cols[role] for role in inter_roles})
    _check_present(frame, path, ["user", "item"])
    interactions = make_interactions(
        frame["user"].astype(str).tolist(),
        frame["item"].astype(str).tolist(),
        _timestamps(frame["timestamp"], path),
    )
    item_path = files.items or path
    table = frame if files.items is None else _load(item_path, {r: cols[r] for r in item_roles})
    _check_present(table, item_path, ["item"])
    return RawData(interactions, _items_from(table, item_roles[2:], cfg.genre_separator))


def _items_from(table: pd.DataFrame, extras: list[str], genre_separator: str) -> pd.DataFrame:
    """Canonical items from a loaded table (first row of each item wins)."""
    table = table.drop_duplicates("item", keep="first")
    values: dict[str, list[Any]] = {}
    for name in extras:
        column = table[name].tolist()
        values[name] = (
            [as_genres(v, genre_separator) for v in column] if name == "genres" else column
        )
    titles = ["" if pd.isna(t) else str(t) for t in table["title"]]
    return make_items(table["item"].astype(str).tolist(), titles, values)


def _is_parquet(path: Path) -> bool:
    return path.suffix in (".parquet", ".pq")


def _row_ref(path: Path, index: int) -> str:
    """Where row ``index`` (0-based data row) sits: a line for text files, a row for Parquet."""
    return f"{path}: row {index + 1}" if _is_parquet(path) else f"{path}:{index + 2}"


def _load(path: Path, wanted: dict[str, str]) -> pd.DataFrame:
    """Read just the ``wanted`` columns (role -> file column), renamed to the roles."""
    if not path.is_file():
        raise DataError(f"{path}: file not found")
    present = _columns_of(path)
    for role, column in wanted.items():
        if column not in present:
            raise DataError(
                f"{path}: no column {column!r} (the {role} column, see source.columns); "
                f"columns present: {', '.join(present)}"
            )
    usecols = list(dict.fromkeys(wanted.values()))
    if _is_parquet(path):
        frame = pq.read_table(path, columns=usecols).to_pandas()
    else:
        frame = _read_text_table(path, usecols)
    return pd.DataFrame({role: frame[column] for role, column in wanted.items()})


def _separator(path: Path) -> str:
    return "\t" if ".tsv" in path.suffixes or ".tab" in path.suffixes else ","


def _columns_of(path: Path) -> list[str]:
    if _is_parquet(path):
        try:
            return list(pq.read_schema(path).names)
        except Exception as exc:  # pyarrow raises several types for corrupt files
            raise DataError(f"{path}: not a readable Parquet file ({exc})") from None
    for _, text in iter_lines(path):
        return next(csv.reader([text], delimiter=_separator(path)))
    raise DataError(f"{path}: empty file; expected a header row")


def _read_text_table(path: Path, usecols: list[str]) -> pd.DataFrame:
    try:
        return pd.read_csv(
            path, sep=_separator(path), usecols=usecols, dtype=str, keep_default_na=False,
            encoding="utf-8", encoding_errors="strict",
        )  # fmt: skip
    except UnicodeDecodeError:
        raise_decode_error(path)
        raise  # unreachable: raise_decode_error always raises
    except (pd.errors.ParserError, EOFError, OSError) as exc:
        raise DataError(f"{path}: malformed table ({exc})") from None


def _check_present(frame: pd.DataFrame, path: Path, roles: list[str]) -> None:
    for role in roles:
        values = frame[role]
        missing = values.isna() | (values.astype(str).str.strip() == "")
        if missing.any():
            index = int(np.flatnonzero(missing.to_numpy())[0])
            raise DataError(f"{_row_ref(path, index)}: empty {role} value; expected an id")


def _timestamps(values: pd.Series, path: Path) -> np.ndarray:
    if pd.api.types.is_datetime64_any_dtype(values):
        utc = pd.to_datetime(values, utc=True)
        return ((utc - pd.Timestamp(0, tz="UTC")) // pd.Timedelta(seconds=1)).to_numpy(np.int64)
    numeric = pd.to_numeric(values, errors="coerce")
    bad = numeric.isna().to_numpy() | ~np.isfinite(numeric.to_numpy(dtype=float, na_value=np.nan))
    if bad.any():
        index = int(np.flatnonzero(bad)[0])
        raise DataError(
            f"{_row_ref(path, index)}: timestamp {values.iloc[index]!r} is not numeric; "
            "expected unix time as a number"
        )
    return np.floor(numeric.to_numpy(dtype=float)).astype(np.int64)


# --- MSL/GDRT sequence CSV -----------------------------------------------------------------------

_SPLIT_FILES = ("train.csv", "valid.csv", "test.csv")


def locate_seqcsv(cfg: SourceConfig, cache_dir: Path) -> InputFiles:
    """Explicit CSV + id2name JSON, else ``train/valid/test.csv`` + ``id2name4Rec.json`` in path."""
    if cfg.interactions and cfg.items:
        return InputFiles((Path(cfg.interactions),), Path(cfg.items))
    directory = require_dir(cfg.path, cfg.kind)
    csvs = tuple(directory / n for n in _SPLIT_FILES if (directory / n).is_file())
    if cfg.interactions:
        csvs = (Path(cfg.interactions),)
    if not csvs:
        raise DataError(f"{directory}: no sample CSV; expected one of {', '.join(_SPLIT_FILES)}")
    names = ["id2name4Rec.json", "id2name.json"]
    items = Path(cfg.items) if cfg.items else first_existing(directory, names, "id2name")
    return InputFiles(csvs, items)


def read_seqcsv(cfg: SourceConfig, files: InputFiles) -> RawData:
    """Rebuild per-user interaction sequences from window rows; titles from id2name."""
    assert files.items is not None
    rows: list[tuple[str, int, int, list[str]]] = []
    for path in files.interactions:
        rows.extend(_read_sample_rows(path, cfg.columns, start=len(rows)))
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
    return RawData(make_interactions(users, items, times), _read_id2name(files.items))


def _read_sample_rows(
    path: Path, columns: dict[str, str], start: int
) -> list[tuple[str, int, int, list[str]]]:
    lines = iter_lines(path)
    _, header_text = next(lines, (0, ""))
    header = next(csv.reader([header_text]))
    pos = [column_index(header, columns[r], path, r) for r in ("user", "item", "timestamp")]
    rows = []
    for number, text in lines:
        fields = next(csv.reader([text]))
        if len(fields) != len(header):
            raise DataError(
                f"{path}:{number}: expected {len(header)} comma-separated fields, found {len(fields)}"
            )
        ids = _parse_id_list(fields[pos[1]], path, number)
        stamp = parse_timestamp(fields[pos[2]], path, number)
        rows.append((fields[pos[0]], stamp, start + len(rows), ids))
    return rows


def _parse_id_list(text: str, path: Path, number: int) -> list[str]:
    try:
        value = ast.literal_eval(text)
    except (ValueError, SyntaxError):
        value = None
    if not isinstance(value, list | tuple) or len(value) < 1:
        raise DataError(
            f"{path}:{number}: item list {text[:60]!r} is not a non-empty Python list literal; "
            "expected e.g. [12, 7, 31] (history then target)"
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
