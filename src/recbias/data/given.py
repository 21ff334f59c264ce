"""``prepare.split = "given"``: the train/valid/test files as the papers' repositories ship them.

Nothing is re-split. Title cleaning, the unknown-item policy and the duplicate-title policy still
apply (they decide which items exist), and everything they change is counted per split in the
card's ``reports.given``:

- sample files (``seqcsv``): a row is one sample. A row whose target item is unusable (no
  title, unknown, dropped as a duplicate title) is dropped; unusable history items are removed from
  the history; a history then shorter than ``prepare.min_history`` drops the row; histories longer
  than ``prepare.max_history`` keep their latest items.
- interaction files (``table`` with ``source.train/valid/test``): each row of a file is a target of
  that file's split, its history the user's up to ``max_history`` earlier rows of all files.

Without a valid file, ``prepare.given_valid = "train_tail"`` moves the latest ``valid_ratio`` share
of the train samples (by timestamp, then file order) to valid; ``"file"`` makes it an error.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from recbias.data.config import DataConfig
from recbias.data.raw import InputFiles
from recbias.data.samples import SPLITS, sliding_windows, sort_sequences
from recbias.errors import ConfigError, DataError


@dataclass
class GivenSplit:
    """Samples per split (dense item ids) plus what the given split changed."""

    splits: dict[str, pd.DataFrame]
    report: dict[str, Any]


def check_given_files(resolved: DataConfig, files: InputFiles) -> None:
    """ConfigError/DataError when the located files cannot form a given split."""
    src, prep = resolved.source, resolved.prepare
    if not files.roles:
        raise ConfigError(
            f"prepare.split: 'given' needs split files, but kind {src.kind!r} read "
            f"{', '.join(str(p) for p in files.interactions)}; set source.train/valid/test "
            "(kinds seqcsv and table) or put train.csv/valid.csv/test.csv in source.path (seqcsv)"
        )
    for role in ("train", "test"):
        if role not in files.roles:
            raise DataError(f"{src.path or 'source'}: no {role} file; expected {role}.csv or "
                            f"source.{role} for split = 'given'")  # fmt: skip
    if "valid" not in files.roles and prep.given_valid == "file":
        raise DataError(
            f"{src.path or files.interactions[0].parent}: no valid file (valid.csv or "
            "source.valid); expected one for split = 'given', or set prepare.given_valid = "
            "'train_tail' to hold out the latest train samples"
        )


def explode_samples(samples: pd.DataFrame) -> pd.DataFrame:
    """One row per item occurrence: ``row`` (sample), ``is_target``, user, item, timestamp, split."""
    lengths = samples["items"].map(len).to_numpy()
    row = np.repeat(np.arange(len(samples)), lengths)
    ends = np.cumsum(lengths)
    pos = np.arange(int(ends[-1]) if len(ends) else 0) - np.repeat(ends - lengths, lengths)
    return pd.DataFrame(
        {
            "user": samples["user"].to_numpy()[row],
            "item": pd.Series([i for ids in samples["items"] for i in ids], dtype="str"),
            "timestamp": samples["timestamp"].to_numpy()[row],
            "row": row,
            "is_target": pos == np.repeat(lengths - 1, lengths),
            "split": samples["split"].to_numpy()[row],
        }
    )


def samples_from_rows(
    long: pd.DataFrame, raw_samples: pd.DataFrame, min_history: int, max_history: int
) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Regroup exploded rows (dense ``item``) into samples; count what changed per split."""
    rows = long["row"].to_numpy()
    items = long["item"].to_numpy(dtype=np.int64)
    targets = long["is_target"].to_numpy()
    bounds = np.flatnonzero(np.r_[True, rows[1:] != rows[:-1], True])
    out: dict[str, list[Any]] = {k: [] for k in ("row", "history", "target")}
    for lo, hi in itertools.pairwise(bounds):
        if not targets[hi - 1]:
            continue  # the target was dropped
        history = items[lo : hi - 1][-max_history:].tolist()
        if len(history) >= min_history:
            out["row"].append(int(rows[lo]))
            out["history"].append(history)
            out["target"].append(int(items[hi - 1]))
    kept = raw_samples.iloc[out["row"]]
    frame = pd.DataFrame(
        {
            "user": kept["user"].to_numpy(),
            "position": np.asarray(out["row"], dtype=np.int64),
            "history": pd.Series(out["history"], dtype=object),
            "target": np.asarray(out["target"], dtype=np.int64),
            "timestamp": kept["timestamp"].to_numpy(dtype=np.int64),
            "split": kept["split"].to_numpy(),
        }
    )
    return frame, _row_report(raw_samples, long, out["row"], max_history)


def _row_report(
    raw_samples: pd.DataFrame, long: pd.DataFrame, kept_rows: list[int], max_history: int
) -> dict[str, Any]:
    lengths = raw_samples["items"].map(len).to_numpy() - 1
    kept = np.zeros(len(raw_samples), dtype=bool)
    kept[kept_rows] = True
    has_target = np.zeros(len(raw_samples), dtype=bool)
    has_target[long.loc[long["is_target"], "row"].to_numpy()] = True
    surviving = np.bincount(long["row"].to_numpy(), minlength=len(raw_samples)) - has_target
    report: dict[str, Any] = {}
    for name in SPLITS:
        mine = (raw_samples["split"] == name).to_numpy()
        report[name] = {
            "rows": int(mine.sum()),
            "dropped_target_unusable": int((mine & ~has_target).sum()),
            "dropped_history_too_short": int((mine & has_target & ~kept).sum()),
            "history_items_removed": int((lengths - surviving)[mine & kept].sum()),
            "histories_truncated": int((mine & kept & (surviving > max_history)).sum()),
        }
    return report


def samples_from_interactions(
    encoded: pd.DataFrame, min_history: int, max_history: int
) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Each interaction of a split file is a target of that split (see module doc)."""
    sequences = sort_sequences(encoded)
    samples = sliding_windows(sequences, min_history, max_history)
    users = sequences["user"].to_numpy(dtype=object)
    first = pd.Series(np.arange(len(users))).groupby(users, sort=False).first()
    at = first.loc[samples["user"].to_numpy()].to_numpy() + samples["position"].to_numpy()
    samples["split"] = sequences["split"].to_numpy()[at]
    report = {}
    for name in SPLITS:
        rows = int((sequences["split"] == name).sum())
        kept = int((samples["split"] == name).sum())
        report[name] = {"rows": rows, "dropped_history_too_short": rows - kept}
    return samples, report


def hold_out_valid(samples: pd.DataFrame, valid_ratio: float) -> tuple[pd.DataFrame, int]:
    """Move the latest ``valid_ratio`` share of train samples to valid; returns how many moved."""
    train = samples.loc[samples["split"] == "train"]
    count = math.floor(len(train) * valid_ratio + 1e-9)
    if count < 1:
        raise DataError(
            f"prepare.given_valid = 'train_tail': valid_ratio {valid_ratio} of {len(train)} train "
            "samples is no sample; expected a larger prepare.valid_ratio"
        )
    order = train.sort_values(["timestamp", "position"], kind="stable").index[-count:]
    return samples.assign(split=samples["split"].where(~samples.index.isin(order), "valid")), count
