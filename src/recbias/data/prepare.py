"""Turn a data source into a prepared, cached dataset folder.

    from recbias.data import DataConfig, prepare_dataset, PreparedDataset
    path = prepare_dataset(DataConfig())          # embedded ML-100K, cached after the first call
    data = PreparedDataset.load(path)

Pipeline: read -> clean titles -> drop interactions on unknown/untitled items -> time window ->
duplicate-title policy -> iterative k-core -> dense item ids -> per-user chronological sequences
-> sliding-window samples -> split -> seeded subsampling -> atomic write.

``popularity.parquet`` keeps each item's training popularity before subsampling (``item``,
``train_interactions``: distinct users with the item in the whole training split's histories or
targets), so popularity groups need not be cut from a few sampled training targets.

Dense item ids 0..n-1 follow the order of the surviving items sorted by raw id (numerically when
every raw id is an integer, else as strings). The folder is ``{cache}/datasets/{name}-{hash12}``;
the hash covers the resolved config (minus ``cache_dir``), the format version and the input
fingerprint (size + sha256 of files up to 256 MiB, size + mtime above; the known checksum for the
embedded data), so a second call finds the folder and returns without recomputing.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from recbias.data.card import peer_title_caveats
from recbias.data.config import (
    DataConfig,
    PrepareConfig,
    default_cache_dir,
    parse_date,
    resolve_data_config,
)
from recbias.data.dedup import dedup_titles, resolve_item_rows
from recbias.data.filters import (
    clean_titles,
    filter_interactions,
    kcore,
    natural_order,
    time_window,
)
from recbias.data.given import (
    check_given_files,
    explode_samples,
    hold_out_valid,
    samples_from_interactions,
    samples_from_rows,
)
from recbias.data.raw import InputFiles, RawData
from recbias.data.samples import (
    SPLITS,
    number_samples,
    require_nonempty,
    sliding_windows,
    sort_sequences,
    split_samples,
    subsample,
)
from recbias.data.sources import locate_inputs, read_source
from recbias.data.stats import dataset_stats, split_summary, training_interactions
from recbias.errors import DataError
from recbias.fsutil import atomic_dir, sha256_file, write_json

log = logging.getLogger(__name__)

FORMAT_VERSION = 1
ITEMS_FILE = "items.parquet"
CARD_FILE = "card.json"
POPULARITY_FILE = "popularity.parquet"
OUTPUT_FILES = (ITEMS_FILE, *(f"{s}.parquet" for s in SPLITS), CARD_FILE, POPULARITY_FILE)
HASHED_MAX_BYTES = 256 * 2**20


@dataclass
class Prepared:
    """A prepared dataset in memory, before it is written."""

    items: pd.DataFrame
    splits: dict[str, pd.DataFrame]
    card: dict[str, Any]
    popularity: np.ndarray  # [n_items] training interactions before subsampling


def prepare_dataset(cfg: DataConfig, force: bool = False) -> Path:
    """Prepare ``cfg`` into its cache folder (or reuse it) and return the folder's path."""
    resolved = resolve_data_config(cfg)
    files = locate_inputs(resolved.source, default_cache_dir(resolved.cache_dir))
    fingerprint = fingerprint_inputs(files)
    key = cache_key(resolved, fingerprint)
    out = _output_dir(resolved, key)
    if not force and all((out / name).is_file() for name in OUTPUT_FILES):
        log.info("using cached dataset %s", out)
        return out
    log.info("preparing %s into %s", resolved.source.name, out)
    prepared = build_dataset(resolved, files)
    prepared.card.update(config=config_dict(resolved), inputs=fingerprint, cache_key=key)
    write_prepared(prepared, out)
    return out


def _output_dir(resolved: DataConfig, key: str) -> Path:
    name = re.sub(r"[^A-Za-z0-9._-]+", "_", resolved.source.name or resolved.source.kind)
    return default_cache_dir(resolved.cache_dir) / "datasets" / f"{name}-{key}"


def config_dict(resolved: DataConfig) -> dict[str, Any]:
    """The resolved config as a dict, without ``cache_dir`` (which does not change the data)."""
    config = dataclasses.asdict(resolved)
    config.pop("cache_dir")
    return config


def fingerprint_inputs(files: InputFiles) -> list[dict[str, Any]]:
    """Identify each input file by size and content hash (or mtime for very large files)."""
    prints = []
    for path in files.all():
        if not path.is_file():
            raise DataError(f"{path}: file not found")
        stat = path.stat()
        entry: dict[str, Any] = {"file": path.name, "size": stat.st_size}
        if path.name in files.checksums:
            entry["sha256"] = files.checksums[path.name]
        elif stat.st_size <= HASHED_MAX_BYTES:
            entry["sha256"] = sha256_file(path)
        else:
            entry["mtime_ns"] = stat.st_mtime_ns
        prints.append(entry)
    return prints


def cache_key(resolved: DataConfig, fingerprint: list[dict[str, Any]]) -> str:
    """12 hex digits identifying the prepared output."""
    payload = {"version": FORMAT_VERSION, "config": config_dict(resolved), "inputs": fingerprint}
    text = json.dumps(payload, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def build_dataset(resolved: DataConfig, files: InputFiles) -> Prepared:
    """Run the whole pipeline in memory."""
    raw = read_source(resolved.source, files)
    prep = resolved.prepare
    if prep.split == "given":
        check_given_files(resolved, files)
        items, sequences, samples, full, reports = build_given(raw, resolved, files)
    else:
        items, interactions, reports = filter_raw(raw, resolved, files)
        items, interactions = encode_items(items, interactions)
        sequences = sort_sequences(interactions)
        samples = number_samples(sliding_windows(sequences, prep.min_history, prep.max_history))
        full = split_samples(samples, prep)
    reports["source"] = {"file_rows": raw.file_rows, **raw.notes}
    reports["peer_titles"] = peer_title_caveats(items["title"].tolist())
    splits = subsample(full, prep)
    context = (
        f"{len(samples)} samples from {sequences['user'].nunique()} users, {len(items)} items, "
        f"{len(sequences)} interactions after kcore={prep.kcore}, min_history={prep.min_history}"
    )
    require_nonempty(splits, prep, context)
    card = {
        "format_version": FORMAT_VERSION,
        "name": resolved.source.name,
        "kind": resolved.source.kind,
        "domain": {"item": resolved.source.domain_item, "items": resolved.source.domain_items},
        **dataset_stats(sequences, samples, len(items), prep.max_history),
        "splits": {s: split_summary(splits[s], len(full[s])) for s in SPLITS},
        "item_columns": list(items.columns),
        "reports": reports,
    }
    return Prepared(items, splits, card, training_interactions(full["train"], len(items)))


def filter_raw(
    raw: RawData, resolved: DataConfig, files: InputFiles
) -> tuple[pd.DataFrame, pd.DataFrame, dict[str, Any]]:
    """Title cleaning, item filter, time window, duplicate titles and k-core."""
    prep = resolved.prepare
    reports: dict[str, Any] = {}
    label = str(files.items) if files.items else str(files.interactions[0])
    items, reports["item_ids"] = resolve_item_rows(raw.items, prep.duplicate_item_ids, label)
    items, reports["titles"] = clean_titles(items, prep)
    items = items.iloc[natural_order(items["item"])]
    interactions, reports["items"] = filter_interactions(
        raw.interactions, raw.items["item"], items["item"], prep.unknown_items, label
    )
    start, end = _window_bounds(prep)
    interactions, reports["time_window"] = time_window(interactions, start, end)
    items = items.loc[items["item"].isin(interactions["item"])]
    items, interactions, reports["duplicates"] = dedup_titles(
        items, interactions, prep.duplicate_titles
    )
    interactions, reports["kcore"] = kcore(interactions, prep.kcore)
    return items, interactions, reports


def build_given(
    raw: RawData, resolved: DataConfig, files: InputFiles
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame, dict[str, pd.DataFrame], dict[str, Any]]:
    """The given split: (items, sequences for the statistics, all samples, splits, reports)."""
    prep = resolved.prepare
    reports: dict[str, Any] = {}
    label = str(files.items) if files.items else str(files.interactions[0])
    items, reports["item_ids"] = resolve_item_rows(raw.items, prep.duplicate_item_ids, label)
    items, reports["titles"] = clean_titles(items, prep)
    items = items.iloc[natural_order(items["item"])]
    rows = explode_samples(raw.samples) if raw.samples is not None else raw.interactions
    rows, reports["items"] = filter_interactions(
        rows, raw.items["item"], items["item"], prep.unknown_items, label
    )
    items = items.loc[items["item"].isin(rows["item"])]
    rows = rows.assign(raw_item=rows["item"])
    items, rows, reports["duplicates"] = dedup_titles(items, rows, prep.duplicate_titles)
    items, rows = encode_items(items, rows)
    if raw.samples is not None:
        samples, per_split = samples_from_rows(
            rows, raw.samples, prep.min_history, prep.max_history
        )
        sequences = _mapped_interactions(raw.interactions, rows)
    else:
        samples, per_split = samples_from_interactions(rows, prep.min_history, prep.max_history)
        sequences = sort_sequences(rows)
    moved = 0
    if "valid" not in files.roles:
        samples, moved = hold_out_valid(samples, prep.valid_ratio)
    ordered = number_samples(samples)
    full = {
        name: ordered.loc[ordered["split"] == name].drop(columns="split").reset_index(drop=True)
        for name in SPLITS
    }
    reports["given"] = {
        "files": {r: p.name for r, p in zip(files.roles, files.interactions, strict=True)},
        "valid_from": "file" if "valid" in files.roles else "train_tail",
        "moved_to_valid": moved,
        "splits": per_split,
    }
    return items, sequences, ordered.drop(columns="split"), full, reports


def _mapped_interactions(interactions: pd.DataFrame, rows: pd.DataFrame) -> pd.DataFrame:
    """The rebuilt interactions of sample files, on the dense ids the samples ended with."""
    dense = rows.drop_duplicates("raw_item").set_index("raw_item")["item"]
    kept = interactions.loc[interactions["item"].isin(dense.index)]
    return sort_sequences(kept.assign(item=kept["item"].map(dense).astype(np.int64)))


def _window_bounds(prep: PrepareConfig) -> tuple[int | None, int | None]:
    start, end = prep.time_window_start, prep.time_window_end
    return (
        parse_date(start, "time_window_start") if start else None,
        parse_date(end, "time_window_end") if end else None,
    )


def encode_items(
    items: pd.DataFrame, interactions: pd.DataFrame
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Keep items that still have interactions; give them dense ids in their current order."""
    kept = items.loc[items["item"].isin(interactions["item"])].reset_index(drop=True)
    dense = pd.Series(np.arange(len(kept), dtype=np.int64), index=kept["item"].to_numpy())
    table = kept.rename(columns={"item": "raw_id"})
    table.insert(0, "item", np.arange(len(kept), dtype=np.int64))
    encoded = interactions.assign(item=interactions["item"].map(dense).astype(np.int64))
    return table, encoded


def _items_table(items: pd.DataFrame) -> pa.Table:
    columns: dict[str, pa.Array] = {
        "item": pa.array(items["item"].to_numpy(), pa.int64()),
        "raw_id": pa.array(items["raw_id"].tolist(), pa.string()),
        "title": pa.array(items["title"].tolist(), pa.string()),
    }
    for name in items.columns[3:]:
        kind = pa.list_(pa.string()) if name == "genres" else pa.string()
        columns[name] = pa.array(items[name].tolist(), kind)
    return pa.table(columns)


def _split_table(frame: pd.DataFrame) -> pa.Table:
    return pa.table(
        {
            "sample_id": pa.array(frame["sample_id"].to_numpy(), pa.int64()),
            "user": pa.array(frame["user"].tolist(), pa.string()),
            "history": pa.array(frame["history"].tolist(), pa.list_(pa.int64())),
            "target": pa.array(frame["target"].to_numpy(), pa.int64()),
            "timestamp": pa.array(frame["timestamp"].to_numpy(), pa.int64()),
        }
    )


def write_prepared(prepared: Prepared, out: Path) -> None:
    """Write the folder atomically: readers see all files or none."""
    with atomic_dir(out) as tmp:
        pq.write_table(_items_table(prepared.items), tmp / ITEMS_FILE)
        for name in SPLITS:
            pq.write_table(_split_table(prepared.splits[name]), tmp / f"{name}.parquet")
        write_json(tmp / CARD_FILE, prepared.card)
        popularity = {
            "item": pa.array(np.arange(len(prepared.popularity)), pa.int64()),
            "train_interactions": pa.array(prepared.popularity, pa.int64()),
        }
        pq.write_table(pa.table(popularity), tmp / POPULARITY_FILE)
    log.info("wrote %s", out)
