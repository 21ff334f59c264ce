"""Bad input raises a one-line DataError naming the file, line/field and expectation; no output left."""

from __future__ import annotations

import gzip
import json
import re
from pathlib import Path

import pytest

from recbias.data import DataConfig, PrepareConfig, PreparedDataset, SourceConfig, prepare_dataset
from recbias.data.config import resolve_data_config
from recbias.errors import ConfigError, DataError

INTER_HEADER = "user_id:token\titem_id:token\trating:float\ttimestamp:float\n"
ITEM_HEADER = "item_id:token\tmovie_title:token_seq\trelease_year:token\tclass:token_seq\n"


def recbole_dir(tmp_path: Path, inter_rows: list[str] | None = None, item_rows=None) -> Path:
    """A valid tiny RecBole dataset (3 users x 4 items) unless rows are replaced."""
    folder = tmp_path / "mini"
    folder.mkdir(exist_ok=True)
    inter_rows = inter_rows or [f"{u}\t{i}\t4\t{100 * u + i}" for u in range(3) for i in range(4)]
    item_rows = item_rows or [f"{i}\tTitle {i}\t199{i}\tDrama" for i in range(4)]
    (folder / "mini.inter").write_text(INTER_HEADER + "\n".join(inter_rows) + "\n")
    (folder / "mini.item").write_text(ITEM_HEADER + "\n".join(item_rows) + "\n")
    return folder


def config(tmp_path: Path, source: SourceConfig, **prepare) -> DataConfig:
    settings = {"kcore": 0, **prepare}
    return DataConfig(
        source=source, prepare=PrepareConfig(**settings), cache_dir=str(tmp_path / "c")
    )


def recbole(tmp_path: Path, folder: Path, **prepare) -> DataConfig:
    return config(tmp_path, SourceConfig(kind="recbole", path=str(folder)), **prepare)


def fails(cfg: DataConfig, *fragments: str) -> str:
    """Run prepare, expect a one-line DataError containing ``fragments``, and no output folder."""
    with pytest.raises(DataError) as caught:
        prepare_dataset(cfg)
    message = str(caught.value)
    assert "\n" not in message
    for fragment in fragments:
        assert fragment in message
    datasets = Path(cfg.cache_dir) / "datasets"
    assert not datasets.exists() or not any(datasets.iterdir())
    return message


def test_valid_fixture_prepares(tmp_path):
    assert prepare_dataset(recbole(tmp_path, recbole_dir(tmp_path))).is_dir()


def test_json_line_cut_in_half(tmp_path):
    lines = [
        json.dumps({"reviewerID": f"A{n}", "asin": "B", "unixReviewTime": n}) for n in range(3)
    ]
    lines[1] = lines[1][:20]
    (tmp_path / "Toys_5.json").write_text("\n".join(lines) + "\n")
    (tmp_path / "meta_Toys.json").write_text(json.dumps({"asin": "B", "title": "Ball"}) + "\n")
    source = SourceConfig(kind="amazon2018", path=str(tmp_path), category="Toys")
    fails(config(tmp_path, source), "Toys_5.json:2:", "malformed JSON")


def test_truncated_gzip(tmp_path):
    rows = "".join(
        json.dumps({"reviewerID": f"A{n}", "asin": "B", "unixReviewTime": n}) + "\n"
        for n in range(500)
    )
    data = gzip.compress(rows.encode())
    (tmp_path / "Toys_5.json.gz").write_bytes(data[: len(data) // 2])
    (tmp_path / "meta_Toys.json").write_text(json.dumps({"asin": "B", "title": "Ball"}) + "\n")
    source = SourceConfig(kind="amazon2018", path=str(tmp_path), category="Toys")
    fails(config(tmp_path, source), "Toys_5.json.gz", "truncated or corrupt gzip")


def test_json_record_without_the_mapped_key(tmp_path):
    (tmp_path / "Toys_5.json").write_text(
        json.dumps({"reviewerID": "A", "ASIN": "B", "unixReviewTime": 1})
    )
    (tmp_path / "meta_Toys.json").write_text(json.dumps({"asin": "B", "title": "Ball"}))
    source = SourceConfig(kind="amazon2018", path=str(tmp_path), category="Toys")
    fails(config(tmp_path, source), "Toys_5.json:1:", "no field 'asin'", "ASIN, reviewerID")


def test_misnamed_recbole_column(tmp_path):
    folder = recbole_dir(tmp_path)
    inter = folder / "mini.inter"
    inter.write_text(inter.read_text().replace("item_id:token", "movie_id:token"))
    fails(
        recbole(tmp_path, folder),
        "mini.inter",
        "'item_id:token'",
        "columns present: user_id:token, movie_id:token, rating:float, timestamp:float",
    )


def test_missing_csv_column(tmp_path):
    (tmp_path / "log.csv").write_text("user,item_id,timestamp,title\nu,i,1,T\n")
    source = SourceConfig(kind="table", interactions=str(tmp_path / "log.csv"))
    fails(config(tmp_path, source), "log.csv", "'user_id'", "columns present: user, item_id")


def test_non_numeric_timestamp_line_format(tmp_path):
    rows = ["0\t0\t4\t100", "0\t1\t4\tyesterday"]
    fails(recbole(tmp_path, recbole_dir(tmp_path, rows)), "mini.inter:3:", "'yesterday'", "numeric")


def test_non_numeric_timestamp_csv(tmp_path):
    (tmp_path / "log.csv").write_text("user_id,item_id,timestamp,title\nu,i,1,T\nu,j,soon,T2\n")
    source = SourceConfig(kind="table", interactions=str(tmp_path / "log.csv"))
    fails(config(tmp_path, source), "log.csv:3:", "'soon'", "numeric")


def test_truncated_delimited_line(tmp_path):
    rows = ["0\t0\t4\t100", "0\t1"]
    fails(
        recbole(tmp_path, recbole_dir(tmp_path, rows)), "mini.inter:3:", "expected 4 tab-separated"
    )


def test_unknown_items_with_error_policy(tmp_path):
    rows = ["0\t0\t4\t100", "0\t77\t4\t101", "0\t88\t4\t102", "0\t77\t4\t103", "0\t1\t4\t104"]
    folder = recbole_dir(tmp_path, rows)
    fails(recbole(tmp_path, folder, unknown_items="error"), "mini.item", "3 interactions", "77, 88")


def test_items_without_titles(tmp_path):
    folder = recbole_dir(tmp_path, item_rows=[f"{i}\t\t1990\tDrama" for i in range(4)])
    fails(
        recbole(tmp_path, folder),
        "mini.item",
        "no interaction refers to an item with a usable title",
    )


def test_non_utf8_item_file(tmp_path):
    folder = recbole_dir(tmp_path)
    item = folder / "mini.item"
    lines = item.read_bytes().split(b"\n")
    lines[2] = b"1\tCaf\xe9 Society\t1991\tDrama"
    item.write_bytes(b"\n".join(lines))
    offset = len(lines[0]) + len(lines[1]) + 2 + len(b"1\tCaf")
    fails(recbole(tmp_path, folder), "mini.item:3:", "0xe9", f"byte offset {offset}", "utf-8")


def test_non_utf8_csv(tmp_path):
    (tmp_path / "log.csv").write_bytes(b"user_id,item_id,timestamp,title\nu,i,1,T\nu,j,2,Caf\xe9\n")
    source = SourceConfig(kind="table", interactions=str(tmp_path / "log.csv"))
    fails(config(tmp_path, source), "log.csv:3:", "0xe9", "utf-8")


def test_histories_too_short_for_the_window(tmp_path):
    fails(
        recbole(tmp_path, recbole_dir(tmp_path), min_history=4),
        "prepare.min_history",
        "longest sequence: 4",
    )


def test_empty_split_names_the_split_and_filter_numbers(tmp_path):
    rows = [f"{u}\t{i}\t4\t{10 * u + i}" for u in range(2) for i in range(3)]
    message = fails(recbole(tmp_path, recbole_dir(tmp_path, rows)), "valid split is empty")
    assert "4 samples from 2 users" in message and "kcore=0" in message


def test_kcore_that_removes_everything(tmp_path):
    fails(recbole(tmp_path, recbole_dir(tmp_path), kcore=50), "prepare.kcore", "12 interactions")


def test_missing_source_files(tmp_path):
    (tmp_path / "mini").mkdir()
    fails(recbole(tmp_path, tmp_path / "mini"), "mini", "expected one of mini.inter")


def test_bad_item_list_literal_in_seqcsv(tmp_path):
    (tmp_path / "train.csv").write_text('user_id,item_ids,timestamp\n1,"[1, 2",5\n')
    (tmp_path / "id2name.json").write_text('{"1": "A", "2": "B"}')
    source = SourceConfig(kind="seqcsv", path=str(tmp_path))
    fails(config(tmp_path, source), "train.csv:2:", "Python list literal")


def test_broken_id2name_json(tmp_path):
    (tmp_path / "train.csv").write_text('user_id,item_ids,timestamp\n1,"[1, 2]",5\n')
    (tmp_path / "id2name.json").write_text('{"1": "A",\n "2": }')
    source = SourceConfig(kind="seqcsv", path=str(tmp_path))
    fails(config(tmp_path, source), "id2name.json:2:", "malformed JSON")


def test_load_names_the_missing_file(tmp_path):
    path = prepare_dataset(recbole(tmp_path, recbole_dir(tmp_path), min_history=1, kcore=0))
    (path / "valid.parquet").unlink()
    with pytest.raises(DataError, match=r"valid\.parquet"):
        PreparedDataset.load(path)


@pytest.mark.parametrize(
    ("prepare", "field"),
    [
        ({"train_ratio": 0.9}, "train_ratio/valid_ratio/test_ratio"),
        ({"kcore": -1}, "prepare.kcore"),
        ({"max_history": 0}, "prepare.max_history"),
        ({"time_window_start": "last year"}, "prepare.time_window_start"),
    ],
)
def test_invalid_prepare_values(prepare, field):
    with pytest.raises(ConfigError, match=re.escape(field)):
        resolve_data_config(DataConfig(prepare=PrepareConfig(**prepare)))
