"""prepare.split = "given": the papers' train/valid/test files are used as shipped."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from recbias.data import DataConfig, PrepareConfig, PreparedDataset, SourceConfig, prepare_dataset
from recbias.errors import ConfigError, DataError

TITLES = {str(i): f"Toy {i}" for i in range(1, 10)}
# (user, item ids: history then target, timestamp) per split file, MSL/GDRT layout
FILES = {
    "train": [("a", [1, 2, 3], 10), ("a", [2, 3, 4], 11), ("b", [5, 6, 7], 12), ("b", [6, 7], 13)],
    "valid": [("a", [3, 4, 5], 20), ("b", [7, 8], 21)],
    "test": [("a", [4, 5, 6], 30), ("b", [7, 8, 9], 31)],
}


def write_msl(folder: Path, files=FILES, titles=TITLES) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name, rows in files.items():
        lines = ["user_id,item_ids,timestamp", *(f'{u},"{ids}",{t}' for u, ids, t in rows)]
        (folder / f"{name}.csv").write_text("\n".join(lines) + "\n")
    (folder / "id2name4Rec.json").write_text(json.dumps(titles))
    return folder


def given(tmp_path: Path, source: SourceConfig, **prepare) -> DataConfig:
    settings = {"split": "given", "kcore": 0, **prepare}
    return DataConfig(source, PrepareConfig(**settings), cache_dir=str(tmp_path / "cache"))


def rows_of(data: PreparedDataset, split: str) -> list[tuple[str, list[str], str, int]]:
    """Samples as (user, history titles, target title, timestamp), in sample-id order."""
    titles = data.titles
    frame = data.split(split)
    return [
        (r.user, [titles[i] for i in r.history], titles[r.target], r.timestamp)
        for r in frame.itertuples()
    ]


def expected(split: str) -> list[tuple[str, list[str], str, int]]:
    return [
        (u, [f"Toy {i}" for i in ids[:-1]], f"Toy {ids[-1]}", t)
        for u, ids, t in sorted(FILES[split], key=lambda r: (r[2], r[0]))
    ]


def test_msl_files_become_exactly_their_samples(tmp_path):
    folder = write_msl(tmp_path / "Toy")
    data = PreparedDataset.load(
        prepare_dataset(given(tmp_path, SourceConfig(kind="seqcsv", path=str(folder))))
    )
    for split in ("train", "valid", "test"):
        assert rows_of(data, split) == expected(split)
    report = data.card["reports"]["given"]
    assert report["files"] == {"train": "train.csv", "valid": "valid.csv", "test": "test.csv"}
    assert {s: report["splits"][s]["rows"] for s in FILES} == {"train": 4, "valid": 2, "test": 2}
    assert data.card["reports"]["source"]["file_rows"]["train.csv"] == 4
    ids = [i for s in FILES for i in data.split(s)["sample_id"]]
    assert sorted(ids) == list(range(8))


def test_missing_valid_file_is_an_error_naming_the_fix(tmp_path):
    folder = write_msl(tmp_path / "Toy", {k: v for k, v in FILES.items() if k != "valid"})
    with pytest.raises(DataError, match=r"no valid file .*given_valid = 'train_tail'"):
        prepare_dataset(given(tmp_path, SourceConfig(kind="seqcsv", path=str(folder))))


def test_train_tail_holds_out_the_latest_train_samples(tmp_path):
    folder = write_msl(tmp_path / "Toy", {k: v for k, v in FILES.items() if k != "valid"})
    cfg = given(
        tmp_path, SourceConfig(kind="seqcsv", path=str(folder)),
        given_valid="train_tail", train_ratio=0.5, valid_ratio=0.5, test_ratio=0.0,
    )  # fmt: skip
    data = PreparedDataset.load(prepare_dataset(cfg))
    assert [r[3] for r in rows_of(data, "valid")] == [12, 13]
    assert [r[3] for r in rows_of(data, "train")] == [10, 11]
    assert data.card["reports"]["given"]["moved_to_valid"] == 2
    assert data.card["reports"]["given"]["valid_from"] == "train_tail"


def test_d3_columns_and_info_file(tmp_path):
    header = "user_id,item_asins,item_asin,history_item_id,item_id,item_title,timestamp"
    for split, rows in FILES.items():
        lines = [header]
        for u, ids, t in rows:
            lines.append(f'{u},"[]",x,"{[i - 1 for i in ids[:-1]]}",{ids[-1] - 1},"T",{t}')
        (tmp_path / f"{split}.csv").write_text("\n".join(lines) + "\n")
    info = "".join(f"Toy {i}\t{i - 1}\n" for i in range(1, 10))
    (tmp_path / "Toys_5_2016-10-2018-11.txt").write_text(info)
    source = SourceConfig(
        kind="seqcsv", path=str(tmp_path), items=str(tmp_path / "Toys_5_2016-10-2018-11.txt"),
        columns={"history": "history_item_id", "item": "item_id"},
    )  # fmt: skip
    data = PreparedDataset.load(prepare_dataset(given(tmp_path, source)))
    for split in ("train", "valid", "test"):
        assert rows_of(data, split) == expected(split)
    assert data.items["raw_id"].tolist() == [str(i) for i in range(9)]


def test_unusable_items_are_counted_per_split(tmp_path):
    titles = {**TITLES, "5": ""}  # item 5 has no usable title
    folder = write_msl(tmp_path / "Toy", titles=titles)
    data = PreparedDataset.load(
        prepare_dataset(given(tmp_path, SourceConfig(kind="seqcsv", path=str(folder))))
    )
    splits = data.card["reports"]["given"]["splits"]
    # train: ("b", [5, 6, 7]) loses history item 5; valid: ("a", [3, 4, 5]) loses its target
    assert splits["train"]["history_items_removed"] == 1
    assert splits["valid"]["dropped_target_unusable"] == 1
    assert splits["test"]["history_items_removed"] == 1  # ("a", [4, 5, 6])
    assert [r[2] for r in rows_of(data, "valid")] == ["Toy 8"]
    assert ("b", ["Toy 6"], "Toy 7", 12) in rows_of(data, "train")


def test_history_longer_than_max_history_keeps_the_latest(tmp_path):
    folder = write_msl(tmp_path / "Toy")
    cfg = given(tmp_path, SourceConfig(kind="seqcsv", path=str(folder)), max_history=1)
    data = PreparedDataset.load(prepare_dataset(cfg))
    assert rows_of(data, "test")[0] == ("a", ["Toy 5"], "Toy 6", 30)
    assert data.card["reports"]["given"]["splits"]["test"]["histories_truncated"] == 2


@pytest.mark.parametrize(
    ("prepare", "key"), [({"kcore": 5}, "prepare.kcore"),
                         ({"time_window_start": "2018-01-01"}, "prepare.time_window_start")],
)  # fmt: skip
def test_given_split_refuses_filters_that_change_the_samples(tmp_path, prepare, key):
    folder = write_msl(tmp_path / "Toy")
    with pytest.raises(ConfigError, match=key):
        prepare_dataset(given(tmp_path, SourceConfig(kind="seqcsv", path=str(folder)), **prepare))


def test_table_split_files_assign_targets_by_file(tmp_path):
    logs = {
        "train": "user_id,item_id,timestamp\na,1,1\na,2,2\nb,1,3\nb,3,4\n",
        "valid": "user_id,item_id,timestamp\na,3,5\n",
        "test": "user_id,item_id,timestamp\na,4,6\nb,2,7\n",
    }
    for name, text in logs.items():
        (tmp_path / f"{name}.csv").write_text(text)
    (tmp_path / "items.csv").write_text("item_id,title\n1,A\n2,B\n3,C\n4,D\n")
    source = SourceConfig(
        kind="table", items=str(tmp_path / "items.csv"),
        **{name: str(tmp_path / f"{name}.csv") for name in logs},
    )  # fmt: skip
    data = PreparedDataset.load(prepare_dataset(given(tmp_path, source, min_title_chars=1)))
    assert rows_of(data, "train") == [("a", ["A"], "B", 2), ("b", ["A"], "C", 4)]
    assert rows_of(data, "valid") == [("a", ["A", "B"], "C", 5)]
    assert rows_of(data, "test") == [("a", ["A", "B", "C"], "D", 6), ("b", ["A", "C"], "B", 7)]
    assert data.card["reports"]["given"]["splits"]["train"]["dropped_history_too_short"] == 2


def test_given_split_needs_split_files(tmp_path):
    (tmp_path / "log.csv").write_text("user_id,item_id,timestamp,title\na,1,1,A\na,2,2,B\n")
    source = SourceConfig(kind="table", interactions=str(tmp_path / "log.csv"))
    with pytest.raises(ConfigError, match="source.train/valid/test"):
        prepare_dataset(given(tmp_path, source))
