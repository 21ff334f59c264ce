"""Generic tables (CSV/TSV/Parquet); the MSL/GDRT/D3 sample CSVs live in ``sources_seqcsv``.

``table``: ``source.interactions`` (user, item, timestamp columns; numeric unix seconds or a
Parquet timestamp column) and optionally ``source.items`` (item, title, extras). Without an items
file, titles and extras come from the interactions file (first row of each item).

With ``source.train/valid/test`` instead of ``source.interactions``, the files are read in that
order and each row keeps its file's role in a ``split`` column (``prepare.split = "given"``: a row
of the valid file is a valid target whose history is the user's earlier rows of every file).
Repeated ids in an items file are resolved by ``prepare.duplicate_item_ids``.
"""

from __future__ import annotations

import csv
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
    make_interactions,
    make_items,
)
from recbias.data.sources_io import (
    iter_lines,
    raise_decode_error,
)
from recbias.data.sources_seqcsv import merge_windows
from recbias.data.truncation import check_last_value
from recbias.errors import ConfigError, DataError

__all__ = ["locate_table", "merge_windows", "read_table"]

# --- generic tables ------------------------------------------------------------------------------


def locate_table(cfg: SourceConfig, cache_dir: Path) -> InputFiles:
    """``source.interactions`` (or ``source.train/valid/test``) and ``source.items`` (optional)."""
    items = Path(cfg.items) if cfg.items else None
    splits = {name: getattr(cfg, name) for name in ("train", "valid", "test")}
    given = {name: Path(value) for name, value in splits.items() if value}
    if given:
        if cfg.interactions:
            raise ConfigError(
                "source.interactions: give either one interactions file or source.train/valid/"
                "test split files, not both"
            )
        return InputFiles(tuple(given.values()), items, roles=tuple(given))
    if not cfg.interactions:
        raise ConfigError(
            "source.interactions: required for kind 'table' (a CSV/TSV/Parquet file), or "
            "source.train/valid/test"
        )
    return InputFiles((Path(cfg.interactions),), items)


def read_table(cfg: SourceConfig, files: InputFiles) -> RawData:
    """Read the table(s), mapping columns by ``source.columns``."""
    cols = cfg.columns
    item_roles = ["item", "title", *extra_names(cols)]
    inter_roles = ["user", "item", "timestamp"]
    if files.items is None:
        inter_roles += item_roles[1:]
    frames = [_interactions_file(p, {r: cols[r] for r in inter_roles}) for p in files.interactions]
    file_rows = {p.name: len(f) for p, f in zip(files.interactions, frames, strict=True)}
    frame = pd.concat(frames, ignore_index=True)
    interactions = make_interactions(
        frame["user"].astype(str).tolist(),
        frame["item"].astype(str).tolist(),
        np.concatenate([f["_stamp"].to_numpy() for f in frames]),
    )
    if files.roles:
        interactions["split"] = np.repeat(files.roles, [len(f) for f in frames])
    item_path = files.items or files.interactions[0]
    if files.items is None:  # titles from the interactions: the first row of each item
        table = frame.drop_duplicates("item", keep="first")
    else:
        table = _load(item_path, {r: cols[r] for r in item_roles})
        file_rows[item_path.name] = len(table)
    _check_present(table, item_path, ["item"])
    items = _items_from(table, item_roles[2:], cfg.genre_separator)
    return RawData(interactions, items, file_rows=file_rows)


def _interactions_file(path: Path, wanted: dict[str, str]) -> pd.DataFrame:
    """One interactions file, checked; ``_stamp`` holds the parsed unix seconds."""
    frame = _load(path, wanted)
    if frame.empty:
        raise DataError(f"{path}: no data rows after the header; expected interactions")
    _check_present(frame, path, ["user", "item"])
    _check_truncated(path, frame["timestamp"])
    return frame.assign(_stamp=_timestamps(frame["timestamp"], path))


def _check_truncated(path: Path, stamps: pd.Series) -> None:
    if _is_parquet(path) or pd.api.types.is_datetime64_any_dtype(stamps):
        return
    text = stamps.astype(str).str.strip().tolist()
    check_last_value(path, [(i + 2, t) for i, t in enumerate(text)], "timestamp")


def _items_from(table: pd.DataFrame, extras: list[str], genre_separator: str) -> pd.DataFrame:
    """Canonical items from a loaded table, one row per file row (repeats resolved later)."""
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
