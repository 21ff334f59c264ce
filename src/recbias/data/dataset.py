"""Read access to a prepared dataset folder (see ``prepare.py`` for how it is made).

Folder schema:
- ``items.parquet``: ``item`` int64 dense id 0..n-1, ``raw_id`` str, ``title`` str (unique), extra
  columns (``genres`` list<str>, others str such as ``year``).
- ``{train,valid,test}.parquet``: ``sample_id`` int64 (unique across splits), ``user`` str,
  ``history`` list<int64> (oldest first), ``target`` int64, ``timestamp`` int64.
- ``card.json``: counts, statistics, reports, resolved config and input fingerprint.
- ``popularity.parquet``: ``item``, ``train_interactions`` int64 (distinct users with the item in
  the whole training split, before subsampling).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from recbias.data.prepare import CARD_FILE, ITEMS_FILE, OUTPUT_FILES, POPULARITY_FILE
from recbias.data.samples import SPLITS
from recbias.domain import Domain
from recbias.errors import DataError

ITEM_COLUMNS = ("item", "raw_id", "title")
SPLIT_COLUMNS = ("sample_id", "user", "history", "target", "timestamp")


def _read_parquet(path: Path, required: tuple[str, ...]) -> pd.DataFrame:
    try:
        table = pq.read_table(path)
    except (OSError, pa.ArrowException) as exc:
        raise DataError(f"{path}: not a readable Parquet file ({exc})") from None
    missing = [c for c in required if c not in table.column_names]
    if missing:
        raise DataError(
            f"{path}: missing columns {missing}; columns present: {', '.join(table.column_names)}"
        )
    # List columns become Python lists (not numpy arrays) so rows compare and print naturally.
    return pd.DataFrame(
        {
            name: pd.Series(table[name].to_pylist(), dtype=object)
            if pa.types.is_list(table.schema.field(name).type)
            else table[name].to_pandas()
            for name in table.column_names
        }
    )


@dataclass
class PreparedDataset:
    """A validated prepared dataset: item catalogue, splits and card."""

    path: Path
    items: pd.DataFrame
    card: dict[str, Any]
    _splits: dict[str, pd.DataFrame] = field(default_factory=dict, repr=False)

    @classmethod
    def load(cls, path: str | Path) -> PreparedDataset:
        """Open and validate a folder written by ``prepare_dataset``."""
        path = Path(path)
        if not path.is_dir():
            raise DataError(f"{path}: not a prepared dataset folder (directory not found)")
        missing = [name for name in OUTPUT_FILES if not (path / name).is_file()]
        if missing:
            raise DataError(f"{path}: missing {', '.join(missing)}; re-run prepare")
        try:
            card = json.loads((path / CARD_FILE).read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise DataError(f"{path / CARD_FILE}: unreadable card ({exc})") from None
        items = _read_parquet(path / ITEMS_FILE, ITEM_COLUMNS)
        _check_items(items, path / ITEMS_FILE)
        return cls(path=path, items=items, card=card)

    @property
    def titles(self) -> list[str]:
        """Item titles indexed by dense item id."""
        return self.items["title"].tolist()

    @property
    def domain(self) -> Domain:
        """Prompt nouns recorded in the card."""
        domain = self.card.get("domain") or {}
        return Domain(domain.get("item", "item"), domain.get("items", "items"))

    @property
    def name(self) -> str:
        """Dataset name from the card."""
        return str(self.card.get("name", self.path.name))

    def train_popularity(self) -> np.ndarray:
        """``[n_items]`` int64 training interactions of each item, counted on the whole training
        split before subsampling (``popularity.parquet``)."""
        path = self.path / POPULARITY_FILE
        frame = _read_parquet(path, ("item", "train_interactions"))
        if not np.array_equal(frame["item"].to_numpy(), np.arange(len(self.items))):
            raise DataError(f"{path}: column 'item' must be the dense ids 0..{len(self.items) - 1}")
        return frame["train_interactions"].to_numpy(dtype=np.int64)

    def split(self, name: str) -> pd.DataFrame:
        """Samples of ``train``, ``valid`` or ``test`` (loaded on first use)."""
        if name not in SPLITS:
            raise DataError(f"unknown split {name!r}; expected one of {', '.join(SPLITS)}")
        if name not in self._splits:
            frame = _read_parquet(self.path / f"{name}.parquet", SPLIT_COLUMNS)
            _check_split(frame, len(self.items), self.path / f"{name}.parquet")
            self._splits[name] = frame
        return self._splits[name]


def _check_items(items: pd.DataFrame, path: Path) -> None:
    ids = items["item"].to_numpy()
    if not np.array_equal(ids, np.arange(len(items))):
        raise DataError(f"{path}: column 'item' must be the dense ids 0..{len(items) - 1} in order")
    duplicated = items["title"].duplicated()
    if duplicated.any():
        title = items.loc[duplicated, "title"].iloc[0]
        raise DataError(f"{path}: title {title!r} appears more than once; expected unique titles")


def _check_split(frame: pd.DataFrame, n_items: int, path: Path) -> None:
    targets = frame["target"].to_numpy()
    if len(targets) and (targets.min() < 0 or targets.max() >= n_items):
        raise DataError(f"{path}: target ids outside 0..{n_items - 1}")
