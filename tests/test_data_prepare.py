"""Preparation steps on hand-computed cases, plus caching and determinism of the output folder."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import recbias.data.prepare as prepare_module
from recbias.data import DataConfig, PrepareConfig, PreparedDataset, SourceConfig, prepare_dataset
from recbias.data.dedup import dedup_titles
from recbias.data.filters import (
    clean_title,
    clean_titles,
    filter_interactions,
    kcore,
    natural_order,
)
from recbias.data.samples import number_samples, sliding_windows, sort_sequences, split_samples
from recbias.data.stats import gini, top_share


def inter(rows: list[tuple[str, str, int]]) -> pd.DataFrame:
    users, items, stamps = zip(*rows, strict=True)
    return pd.DataFrame({"user": list(users), "item": list(items), "timestamp": list(stamps)})


def pairs(frame: pd.DataFrame) -> list[tuple[str, str]]:
    return sorted(zip(frame["user"], frame["item"], strict=True))


# --- titles --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "clean"),
    [
        ("Tom &amp; Jerry", "Tom & Jerry"),
        ("&quot;Heat&quot;", "Heat"),
        ('  "Quoted Title"  ', "Quoted Title"),
        ('Say "Cheese" Now', 'Say "Cheese" Now'),
        ("'Til There Was You", "'Til There Was You"),
        ("  Lots \t of\n  space ", "Lots of space"),
    ],
)
def test_clean_title(raw, clean):
    assert clean_title(raw) == clean


def test_clean_titles_drops_and_reports_each_reason():
    titles = [
        "Good Title",
        "",
        "x",
        "unkonwn",
        " ".join(["w"] * 21),
        "<span id='a'>Bad</span>",
        "Ok",
    ]
    items = pd.DataFrame({"item": [str(i) for i in range(len(titles))], "title": titles})
    kept, report = clean_titles(items, PrepareConfig())
    assert kept["title"].tolist() == ["Good Title", "Ok"]
    assert report["dropped"] == {"markup": 1, "empty": 1, "junk": 1, "too_short": 1, "too_long": 1}
    assert report["kept"] == 2


def test_clean_titles_twenty_words_is_still_kept():
    items = pd.DataFrame({"item": ["1"], "title": [" ".join(["w"] * 20)]})
    kept, _ = clean_titles(items, PrepareConfig(max_title_words=20))
    assert len(kept) == 1


def test_repeated_item_rows_keep_the_first():
    items = pd.DataFrame({"item": ["1", "1"], "title": ["First", "Second"]})
    kept, report = clean_titles(items, PrepareConfig())
    assert kept["title"].tolist() == ["First"] and report["repeated_item_rows"] == 1


def test_unknown_items_are_dropped_with_a_warning(caplog):
    frame = inter([("u", "a", 1), ("u", "zz", 2), ("u", "b", 3)])
    known = pd.Series(["a", "b"])
    with caplog.at_level(logging.WARNING):
        kept, report = filter_interactions(frame, known, pd.Series(["a"]), "drop", "items.csv")
    assert kept["item"].tolist() == ["a"]
    assert report["unknown_item_interactions"] == 1 and report["untitled_item_interactions"] == 1
    assert "zz" in caplog.text


# --- duplicate titles ----------------------------------------------------------------------------


def dup_items(with_year: bool = True) -> tuple[pd.DataFrame, pd.DataFrame]:
    items = pd.DataFrame(
        {
            "item": ["1", "2", "3", "4", "5"],
            "title": ["Sabrina", "Sabrina", "Heat", "Heat", "Heat (2)"],
            "year": ["1954", "1995", "1995", "1995", ""],
        }
    )
    if not with_year:
        items = items.drop(columns="year")
    frame = inter([("u", i, n) for n, i in enumerate(["1", "2", "3", "4", "5", "4"])])
    return items, frame


def test_disambiguate_by_year_then_by_number():
    items, frame = dup_items()
    out, same, report = dedup_titles(items, frame, "disambiguate")
    # "Heat (1995)" twice -> second numbered; "Heat (2)" already existed and is left alone.
    assert out["title"].tolist() == [
        "Sabrina (1954)",
        "Sabrina (1995)",
        "Heat (1995)",
        "Heat (1995) (2)",
        "Heat (2)",
    ]
    assert same is frame and report["shared_titles"] == 2 and report["renamed"] == 4


def test_disambiguate_without_year_numbers_in_item_order_avoiding_existing_titles():
    items, frame = dup_items(with_year=False)
    out, _, _ = dedup_titles(items, frame, "disambiguate")
    assert out["title"].tolist() == ["Sabrina", "Sabrina (2)", "Heat", "Heat (3)", "Heat (2)"]


def test_merge_keeps_the_first_item_and_remaps_interactions():
    items, frame = dup_items()
    out, remapped, report = dedup_titles(items, frame, "merge")
    assert out["item"].tolist() == ["1", "3", "5"]
    assert remapped["item"].tolist() == ["1", "1", "3", "3", "5", "3"]
    assert report["merged_items"] == 2 and report["remapped_interactions"] == 3


def test_drop_removes_every_item_with_a_shared_title():
    items, frame = dup_items()
    out, kept, report = dedup_titles(items, frame, "drop")
    assert out["item"].tolist() == ["5"] and kept["item"].tolist() == ["5"]
    assert report["dropped_interactions"] == 5


def test_natural_order_sorts_integer_ids_numerically():
    assert natural_order(pd.Series(["10", "9", "100"])).tolist() == [1, 0, 2]
    assert natural_order(pd.Series(["b", "a10", "a9"])).tolist() == [1, 2, 0]


# --- k-core --------------------------------------------------------------------------------------


def test_kcore_needs_two_rounds():
    frame = inter(
        [
            *[("u1", "a", 1), ("u1", "b", 2), ("u2", "a", 3), ("u2", "b", 4), ("u2", "c", 5)],
            *[("u3", "a", 6), ("u3", "c", 7), ("u3", "d", 8), ("u4", "d", 9)],
        ]
    )
    # Round 1 drops u4 (1 interaction); that leaves d with 1, so round 2 drops (u3, d).
    kept, report = kcore(frame, 2)
    assert pairs(kept) == [
        ("u1", "a"),
        ("u1", "b"),
        ("u2", "a"),
        ("u2", "b"),
        ("u2", "c"),
        ("u3", "a"),
        ("u3", "c"),
    ]
    assert report["rounds"] == 2
    assert report["removed"] == {"interactions": 2, "users": 1, "items": 1}


def test_kcore_zero_disables():
    frame = inter([("u", "a", 1)])
    kept, report = kcore(frame, 0)
    assert len(kept) == 1 and report["rounds"] == 0


# --- windows and splits --------------------------------------------------------------------------


def test_sliding_window_histories_for_twelve_interactions():
    frame = pd.DataFrame(
        {"user": ["u"] * 12, "item": list(range(12)), "timestamp": range(100, 112)}
    )
    samples = sliding_windows(sort_sequences(frame), min_history=1, max_history=10)
    assert samples["history"].tolist() == [
        [0],
        [0, 1],
        [0, 1, 2],
        [0, 1, 2, 3],
        [0, 1, 2, 3, 4],
        [0, 1, 2, 3, 4, 5],
        [0, 1, 2, 3, 4, 5, 6],
        [0, 1, 2, 3, 4, 5, 6, 7],
        [0, 1, 2, 3, 4, 5, 6, 7, 8],
        [0, 1, 2, 3, 4, 5, 6, 7, 8, 9],
        [1, 2, 3, 4, 5, 6, 7, 8, 9, 10],
    ]
    assert samples["target"].tolist() == list(range(1, 12))
    assert samples["timestamp"].tolist() == list(range(101, 112))


def test_min_history_skips_early_positions():
    frame = pd.DataFrame({"user": ["u"] * 5, "item": [4, 3, 2, 1, 0], "timestamp": range(5)})
    samples = sliding_windows(sort_sequences(frame), min_history=3, max_history=3)
    assert samples["history"].tolist() == [[4, 3, 2], [3, 2, 1]]


def test_timestamp_ties_keep_file_order():
    frame = pd.DataFrame(
        {"user": ["u", "u", "u"], "item": [7, 8, 9], "timestamp": [5, 5, 1]}, index=[0, 1, 2]
    )
    assert sort_sequences(frame)["item"].tolist() == [9, 7, 8]


def ten_samples() -> pd.DataFrame:
    users = ["b", "a", "b", "a", "c", "c", "a", "b", "c", "a"]
    stamps = [1, 1, 2, 3, 4, 5, 6, 7, 8, 9]
    frame = pd.DataFrame(
        {
            "user": users,
            "position": [1, 1, 2, 2, 1, 2, 3, 3, 3, 4],
            "history": [[0]] * 10,
            "target": range(10),
            "timestamp": stamps,
        }
    )
    return number_samples(frame)


def test_number_samples_orders_by_time_then_user():
    ordered = ten_samples()
    assert ordered["user"].tolist()[:2] == ["a", "b"]  # tie at t=1 broken by user
    assert ordered["sample_id"].tolist() == list(range(10))


def test_chronological_split_boundaries():
    splits = split_samples(ten_samples(), PrepareConfig())
    assert [len(splits[s]) for s in ("train", "valid", "test")] == [8, 1, 1]
    assert splits["train"]["timestamp"].max() <= splits["valid"]["timestamp"].min()
    assert splits["valid"]["timestamp"].tolist() == [8] and splits["test"][
        "timestamp"
    ].tolist() == [9]


def test_leave_one_out_split():
    splits = split_samples(ten_samples(), PrepareConfig(split="leave_one_out"))
    by_user = {s: dict(zip(f["user"], f["timestamp"], strict=True)) for s, f in splits.items()}
    assert by_user["test"] == {"a": 9, "b": 7, "c": 8}
    assert by_user["valid"] == {"a": 6, "b": 2, "c": 5}
    assert sorted(splits["train"]["timestamp"]) == [1, 1, 3, 4]


def test_gini_and_top_share():
    assert gini(np.array([5, 5, 5, 5])) == pytest.approx(0.0)
    assert gini(np.array([0, 0, 0, 8])) == pytest.approx(0.75)
    assert top_share(np.array([1] * 9 + [11])) == pytest.approx(0.55)


# --- end to end on a small table -----------------------------------------------------------------


def table_config(tmp_path: Path, **prepare) -> DataConfig:
    """6 users x 8 interactions over 10 items with distinct timestamps (interleaved users)."""
    path = tmp_path / "src"
    path.mkdir(parents=True, exist_ok=True)
    rows = [f"u{u},{(u + 3 * j) % 10},{1000 + 10 * j + u}" for u in range(6) for j in range(8)]
    (path / "log.csv").write_text("user_id,item_id,timestamp\n" + "\n".join(rows) + "\n")
    titles = "\n".join(f"{i},Movie {i}" for i in range(10))
    (path / "items.csv").write_text("item_id,title\n" + titles + "\n")
    source = SourceConfig(
        kind="table", interactions=str(path / "log.csv"), items=str(path / "items.csv")
    )
    settings = {"kcore": 2, **prepare}
    return DataConfig(
        source=source, prepare=PrepareConfig(**settings), cache_dir=str(tmp_path / "c")
    )


def test_prepared_folder_schema_and_contents(tmp_path):
    data = PreparedDataset.load(prepare_dataset(table_config(tmp_path)))
    assert data.titles == [f"Movie {i}" for i in range(10)]
    assert data.items["raw_id"].tolist() == [str(i) for i in range(10)]
    assert (data.domain.item, data.domain.items) == ("item", "items")
    splits = [data.split(s) for s in ("train", "valid", "test")]
    assert [len(s) for s in splits] == [33, 4, 5]  # 6 users x 7 samples = 42
    ids = pd.concat([s["sample_id"] for s in splits])
    assert ids.is_unique and sorted(ids) == list(range(42))
    first = splits[0].iloc[0]
    assert first["user"] == "u0" and first["history"] == [0] and first["target"] == 3
    assert all(isinstance(v, int) for v in splits[0]["history"].iloc[-1])
    assert data.card["counts"] == {"users": 6, "items": 10, "interactions": 48, "samples": 42}


def test_popularity_counts_every_training_interaction_before_subsampling(tmp_path):
    data = PreparedDataset.load(prepare_dataset(table_config(tmp_path, train_samples=3)))
    assert len(data.split("train")) == 3
    # user u's j-th interaction is item (u + 3j) % 10 at time 1000 + 10j + u; the 42 samples
    # (targets j = 1..7) in time order put j = 1..5 of every user and j = 6 of users 0-2 in the
    # first 33 (train): user u's training interactions are j = 0..5, and j = 6 for u < 3.
    expected = np.zeros(10, dtype=np.int64)
    for u in range(6):
        for j in range(7 if u < 3 else 6):
            expected[(u + 3 * j) % 10] += 1
    np.testing.assert_array_equal(data.train_popularity(), expected)


def test_second_call_uses_the_cache(tmp_path, monkeypatch):
    calls = []
    real = prepare_module.build_dataset
    monkeypatch.setattr(prepare_module, "build_dataset", lambda *a: calls.append(1) or real(*a))
    cfg = table_config(tmp_path)
    first = prepare_dataset(cfg)
    stamp = (first / "train.parquet").stat().st_mtime_ns
    assert prepare_dataset(cfg) == first and len(calls) == 1
    assert (first / "train.parquet").stat().st_mtime_ns == stamp
    assert prepare_dataset(cfg, force=True) == first and len(calls) == 2


def test_config_change_changes_the_folder(tmp_path):
    one = prepare_dataset(table_config(tmp_path))
    two = prepare_dataset(table_config(tmp_path, max_history=3))
    assert one != two and one.name.startswith("log-") and two.is_dir()


def test_input_change_changes_the_folder(tmp_path):
    cfg = table_config(tmp_path)
    one = prepare_dataset(cfg)
    items = Path(cfg.source.items)
    items.write_text(items.read_text().replace("Movie 3", "Film 3"))
    assert prepare_dataset(cfg) != one


def test_same_seed_gives_identical_files(tmp_path):
    one = prepare_dataset(table_config(tmp_path / "a", train_samples=10))
    two = prepare_dataset(table_config(tmp_path / "b", train_samples=10))
    for name in ("items.parquet", "train.parquet", "valid.parquet", "test.parquet"):
        assert (one / name).read_bytes() == (two / name).read_bytes()
    other = prepare_dataset(table_config(tmp_path / "b", train_samples=10, seed=7))
    ids = [PreparedDataset.load(p).split("train")["sample_id"].tolist() for p in (one, other)]
    assert len(ids[0]) == 10 and ids[0] != ids[1] and ids[0] == sorted(ids[0])


def test_time_window_keeps_the_half_open_range(tmp_path):
    cfg = table_config(tmp_path, kcore=0)
    cfg.prepare.time_window_start = "1970-01-01T00:17:00"  # 1020 s
    data = PreparedDataset.load(prepare_dataset(cfg))
    assert data.card["reports"]["time_window"]["dropped"] == 12
    assert data.split("train")["timestamp"].min() >= 1030
