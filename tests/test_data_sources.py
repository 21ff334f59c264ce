"""Every source kind reads small synthetic files into the canonical RawData form."""

from __future__ import annotations

import gzip
import json
import typing
from pathlib import Path

import pandas as pd
import pytest

from recbias.data import ml100k_status
from recbias.data.config import DataConfig, SourceConfig, SourceKind, resolve_data_config
from recbias.data.sources import SOURCES, locate_inputs, read_source
from recbias.data.sources_table import merge_windows
from recbias.errors import ConfigError


def read(tmp_path: Path, **source: typing.Any):
    resolved = resolve_data_config(DataConfig(source=SourceConfig(**source)))
    files = locate_inputs(resolved.source, tmp_path / "cache")
    return read_source(resolved.source, files), files


def write(path: Path, text: str, encoding: str = "utf-8") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(text.encode(encoding))
    return path


def write_gz(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with gzip.open(path, "wt", encoding="utf-8") as handle:
        handle.write(text)
    return path


def jsonl(*records: dict) -> str:
    return "".join(json.dumps(r) + "\n" for r in records)


RECBOLE_INTER = (
    "user_id:token\titem_id:token\trating:float\ttimestamp:float\n1\t10\t4\t100\n2\t11\t3\t90.0\n"
)
RECBOLE_ITEM = (
    "item_id:token\tmovie_title:token_seq\trelease_year:token\tclass:token_seq\n"
    "10\tToy Story\t1995\tAnimation Children's Comedy\n"
    "11\tHeat\t1995\tAction Crime\n"
)


def test_every_source_kind_is_registered():
    assert set(SOURCES) == set(typing.get_args(SourceKind))


def test_recbole_atomic_files(tmp_path):
    write(tmp_path / "mini" / "mini.inter", RECBOLE_INTER)
    write(tmp_path / "mini" / "mini.item", RECBOLE_ITEM)
    raw, _ = read(tmp_path, kind="recbole", path=str(tmp_path / "mini"))
    assert raw.interactions.to_dict("list") == {
        "user": ["1", "2"],
        "item": ["10", "11"],
        "timestamp": [100, 90],
    }
    assert raw.interactions["timestamp"].dtype == "int64"
    assert raw.items["title"].tolist() == ["Toy Story", "Heat"]
    assert raw.items["year"].tolist() == ["1995", "1995"]
    assert raw.items["genres"].tolist() == [
        ["Animation", "Children's", "Comedy"],
        ["Action", "Crime"],
    ]


def test_recbole_columns_mapped_by_config_with_bare_names(tmp_path):
    write(tmp_path / "a.inter", "uid:token\tiid:token\tts:float\nu\ti\t5\n")
    write(tmp_path / "a.item", "iid:token\ttitle:token_seq\ni\tSome Title\n")
    columns = {"user": "uid", "item": "iid", "timestamp": "ts", "title": "title"}
    raw, _ = read(
        tmp_path,
        kind="recbole",
        interactions=str(tmp_path / "a.inter"),
        items=str(tmp_path / "a.item"),
        columns=columns,
    )
    assert raw.interactions.iloc[0].tolist() == ["u", "i", 5]
    assert raw.items["title"].tolist() == ["Some Title"]
    # A custom mapping lists its extras itself: the ML-100K default extras are not added.
    assert list(raw.items.columns) == ["item", "title"]


def test_ml100k_kind_reads_local_files_without_download(tmp_path):
    write(tmp_path / "ml" / "ml-100k.inter", RECBOLE_INTER)
    write(tmp_path / "ml" / "ml-100k.item", RECBOLE_ITEM)
    raw, files = read(tmp_path, kind="ml100k", path=str(tmp_path / "ml"))
    assert len(raw.interactions) == 2 and files.checksums == {}
    assert not (tmp_path / "cache").exists()


def test_movielens_100k_raw_files_latin1_items(tmp_path):
    write(tmp_path / "ml" / "u.data", "196\t242\t3\t881250949\n186\t302\t3\t891717742\n")
    flags = "|".join(["0"] * 19)
    noir = "|".join("1" if g in (10, 16) else "0" for g in range(19))
    u_item = (
        f"242|Misérables, Les (1995)|01-Jan-1995||http://x|{flags}\n"
        f"302|L.A. Confidential|01-Jan-1997||http://y|{noir}\n"
    )
    write(tmp_path / "ml" / "u.item", u_item, encoding="latin-1")
    raw, _ = read(tmp_path, kind="movielens", path=str(tmp_path / "ml"))
    assert raw.interactions["item"].tolist() == ["242", "302"]
    assert raw.items["title"].tolist() == ["Misérables, Les (1995)", "L.A. Confidential"]
    assert raw.items["year"].tolist() == ["1995", "1997"]
    assert raw.items["genres"].tolist() == [[], ["Film-Noir", "Thriller"]]


def test_movielens_1m_dat_files(tmp_path):
    write(tmp_path / "ml" / "ratings.dat", "1::1193::5::978300760\n1::661::3::978302109\n")
    write(
        tmp_path / "ml" / "movies.dat",
        "1193::One Flew Over the Cuckoo's Nest (1975)::Drama\n661::James (1996)::Animation|Musical\n",
    )
    raw, _ = read(tmp_path, kind="movielens", path=str(tmp_path / "ml"))
    assert raw.interactions["timestamp"].tolist() == [978300760, 978302109]
    assert raw.items["genres"].tolist() == [["Drama"], ["Animation", "Musical"]]
    assert raw.items["year"].tolist() == ["1975", "1996"]


def test_movielens_rejects_a_column_mapping(tmp_path):
    with pytest.raises(ConfigError, match="fixed column positions"):
        resolve_data_config(
            DataConfig(source=SourceConfig(kind="movielens", columns={"user": "x"}))
        )


def test_amazon2018_gzipped_reviews_and_meta(tmp_path):
    reviews = jsonl(
        {"reviewerID": "A1", "asin": "B1", "unixReviewTime": 1500000000, "overall": 5},
        {"reviewerID": "A2", "asin": "B2", "unixReviewTime": 1500000100},
    )
    meta = jsonl(
        {"asin": "B1", "title": "Lego &amp; Friends", "category": ["Toys", "Bricks"]},
        {"asin": "B2"},
    )
    write_gz(tmp_path / "Toys_and_Games_5.json.gz", reviews)
    write_gz(tmp_path / "meta_Toys_and_Games.json.gz", meta)
    raw, files = read(
        tmp_path,
        kind="amazon2018",
        path=str(tmp_path),
        category="Toys_and_Games",
        columns={"genres": "category"},
    )
    assert files.interactions[0].name == "Toys_and_Games_5.json.gz"
    assert raw.interactions.to_dict("list") == {
        "user": ["A1", "A2"],
        "item": ["B1", "B2"],
        "timestamp": [1500000000, 1500000100],
    }
    assert raw.items["title"].tolist() == ["Lego &amp; Friends", ""]
    assert raw.items["genres"].tolist() == [["Toys", "Bricks"], []]


def test_amazon2018_falls_back_to_full_review_file(tmp_path):
    write(tmp_path / "Books.json", jsonl({"reviewerID": "A", "asin": "B", "unixReviewTime": 7}))
    write(tmp_path / "meta_Books.json", jsonl({"asin": "B", "title": "Dune"}))
    raw, files = read(tmp_path, kind="amazon2018", path=str(tmp_path), category="Books")
    assert files.interactions[0].name == "Books.json"
    assert raw.items["title"].tolist() == ["Dune"]


def test_amazon2023_milliseconds_become_seconds(tmp_path):
    write(
        tmp_path / "All_Beauty.jsonl",
        jsonl({"user_id": "U", "parent_asin": "P", "asin": "X", "timestamp": 1588687728923}),
    )
    write(tmp_path / "meta_All_Beauty.jsonl", jsonl({"parent_asin": "P", "title": "Soap"}))
    raw, _ = read(tmp_path, kind="amazon2023", path=str(tmp_path), category="All_Beauty")
    assert raw.interactions["timestamp"].tolist() == [1588687728]
    assert raw.interactions["item"].tolist() == ["P"]


def test_amazon_domain_and_name_from_category():
    src = resolve_data_config(
        DataConfig(source=SourceConfig(kind="amazon2018", category="Video_Games", path="/x"))
    ).source
    assert (src.domain_item, src.domain_items, src.name) == (
        "video game",
        "video games",
        "Video_Games-2018",
    )


def test_amazon_without_category_is_a_config_error():
    with pytest.raises(ConfigError, match=r"source\.category"):
        resolve_data_config(DataConfig(source=SourceConfig(kind="amazon2023", path="/x")))


def test_table_csv_with_items_file_and_genre_separator(tmp_path):
    write(tmp_path / "inter.csv", "uid,iid,when\nu1,7,30\nu1,8,40.5\n")
    write(tmp_path / "items.csv", 'iid,name,tags\n7,"Seven, The",Drama|War\n8,Eight,\n')
    raw, _ = read(
        tmp_path,
        kind="table",
        interactions=str(tmp_path / "inter.csv"),
        items=str(tmp_path / "items.csv"),
        columns={
            "user": "uid",
            "item": "iid",
            "timestamp": "when",
            "title": "name",
            "genres": "tags",
        },
    )
    assert raw.interactions["timestamp"].tolist() == [30, 40]
    assert raw.items["title"].tolist() == ["Seven, The", "Eight"]
    assert raw.items["genres"].tolist() == [["Drama", "War"], []]


def test_table_parquet_single_file_supplies_titles(tmp_path):
    frame = pd.DataFrame(
        {
            "user_id": ["a", "a", "b"],
            "item_id": [1, 2, 1],
            "timestamp": pd.to_datetime(["2020-01-01", "2020-01-02", "2020-01-03"], utc=True),
            "title": ["One", "Two", "One"],
        }
    )
    frame.to_parquet(tmp_path / "log.parquet")
    raw, files = read(tmp_path, kind="table", interactions=str(tmp_path / "log.parquet"))
    assert files.items is None
    assert raw.interactions["timestamp"].tolist() == [1577836800, 1577923200, 1578009600]
    assert raw.items.to_dict("list") == {"item": ["1", "2"], "title": ["One", "Two"]}


def test_table_tsv(tmp_path):
    write(tmp_path / "log.tsv", "user_id\titem_id\ttimestamp\ttitle\nu\ti\t3\tA, B\n")
    raw, _ = read(tmp_path, kind="table", interactions=str(tmp_path / "log.tsv"))
    assert raw.items["title"].tolist() == ["A, B"]


def test_merge_windows_rebuilds_one_sequence_from_overlapping_rows():
    rows = [
        (100, 0, ["a", "b", "c"]),  # history a, b -> target c
        (200, 1, ["a", "b", "c", "d"]),  # overlaps: only d is new
        (300, 2, ["c", "d", "e"]),  # window slid: only e is new
        (400, 3, ["x", "y"]),  # no overlap: x and y are both new
    ]
    assert merge_windows(rows) == [
        ("a", 98),
        ("b", 99),
        ("c", 100),
        ("d", 200),
        ("e", 300),
        ("x", 399),
        ("y", 400),
    ]


def test_merge_windows_never_goes_back_in_time():
    rows = [(100, 0, ["a", "b"]), (101, 1, ["p", "q", "r", "s"])]
    stamps = [t for _, t in merge_windows(rows)]
    assert stamps == [99, 100, 100, 100, 100, 101]


def test_seqcsv_directory_with_splits_and_id2name(tmp_path):
    write(tmp_path / "train.csv", 'user_id,item_ids,timestamp\n5,"[1, 2]",10\n5,"[1, 2, 3]",20\n')
    write(tmp_path / "test.csv", 'user_id,item_ids,timestamp\n5,"[1, 2, 3, 4]",30\n')
    write(tmp_path / "id2name4Rec.json", json.dumps({"1": "A", "2": "B", "3": "C", "4": "D"}))
    raw, _ = read(tmp_path, kind="seqcsv", path=str(tmp_path))
    assert raw.interactions.to_dict("list") == {
        "user": ["5"] * 4,
        "item": ["1", "2", "3", "4"],
        "timestamp": [9, 10, 20, 30],
    }
    assert raw.items["title"].tolist() == ["A", "B", "C", "D"]


def test_ml100k_env_dir_overrides_the_cache(tmp_path, monkeypatch):
    write(tmp_path / "ml" / "ml-100k.inter", RECBOLE_INTER)
    write(tmp_path / "ml" / "ml-100k.item", RECBOLE_ITEM)
    monkeypatch.setenv("RECBIAS_ML100K_DIR", str(tmp_path / "ml"))
    raw, files = read(tmp_path, kind="ml100k")
    assert files.items == (tmp_path / "ml" / "ml-100k.item").resolve() and len(raw.items) == 2
    status = ml100k_status(tmp_path / "cache")
    assert status["source"] == "RECBIAS_ML100K_DIR" and status["present"]
    assert not status["verified"]  # not the embedded bytes


def test_ml100k_status_of_an_empty_cache(tmp_path, monkeypatch):
    monkeypatch.delenv("RECBIAS_ML100K_DIR", raising=False)
    status = ml100k_status(tmp_path)
    assert status["present"] is False and status["verified"] is False
    assert status["path"] == str(tmp_path / "assets" / "ml-100k")


def test_resolving_twice_changes_nothing(tmp_path):
    once = resolve_data_config(DataConfig(source=SourceConfig(kind="recbole", path=str(tmp_path))))
    assert resolve_data_config(once) == once
    assert once.source.columns["genres"] == "class:token_seq" and once.source.name == tmp_path.name
