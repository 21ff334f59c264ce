"""More bad input: each case is a one-line DataError naming the file and what was expected, or an
explicit policy the dataset card records."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from recbias.data import DataConfig, PrepareConfig, PreparedDataset, SourceConfig, prepare_dataset
from recbias.errors import DataError

ROWS = [f"u{u},i{i},{1000000000 + 10 * u + i}" for u in range(3) for i in range(4)]


def table(tmp_path: Path, rows: list[str], items: list[str] | None = None, end: str = "\n",
          **prepare) -> DataConfig:  # fmt: skip
    (tmp_path / "log.csv").write_text("user_id,item_id,timestamp\n" + "\n".join(rows) + end)
    items = items if items is not None else [f"i{i},Title {i}" for i in range(4)]
    (tmp_path / "items.csv").write_text("item_id,title\n" + "\n".join(items) + "\n")
    source = SourceConfig(
        kind="table", interactions=str(tmp_path / "log.csv"), items=str(tmp_path / "items.csv")
    )
    settings = {"kcore": 0, **prepare}
    return DataConfig(source, PrepareConfig(**settings), cache_dir=str(tmp_path / "cache"))


def fails(cfg: DataConfig, *fragments: str) -> str:
    with pytest.raises(DataError) as caught:
        prepare_dataset(cfg)
    message = str(caught.value)
    assert "\n" not in message
    for fragment in fragments:
        assert fragment in message, message
    datasets = Path(cfg.cache_dir) / "datasets"
    assert not datasets.exists() or not any(datasets.iterdir())
    return message


def test_fixture_prepares(tmp_path):
    card = PreparedDataset.load(prepare_dataset(table(tmp_path, ROWS))).card
    assert card["reports"]["source"]["file_rows"] == {"log.csv": 12, "items.csv": 4}


def test_duplicate_item_id_with_another_title_is_an_error(tmp_path):
    items = ["i0,Title 0", "i1,Title 1", "i2,Title 2", "i3,Title 3", "i1,Other"]
    fails(table(tmp_path, ROWS, items), "items.csv", "'i1'", "rows 2 and 5", "'Other'",
          "duplicate_item_ids")  # fmt: skip


@pytest.mark.parametrize(("policy", "title"), [("first", "Title 1"), ("last", "Other")])
def test_duplicate_item_id_policy_is_applied_and_recorded(tmp_path, policy, title):
    items = ["i0,Title 0", "i1,Title 1", "i2,Title 2", "i3,Title 3", "i1,Other"]
    data = PreparedDataset.load(
        prepare_dataset(table(tmp_path, ROWS, items, duplicate_item_ids=policy))
    )
    assert title in data.titles and len(data.titles) == 4
    report = data.card["reports"]["item_ids"]
    assert report["policy"] == policy and report["conflicting_ids"] == 1


def test_exact_repeat_of_an_item_row_is_collapsed_and_counted(tmp_path):
    items = ["i0,Title 0", "i1,Title 1", "i2,Title 2", "i3,Title 3", "i1,Title 1"]
    data = PreparedDataset.load(prepare_dataset(table(tmp_path, ROWS, items)))
    assert data.card["reports"]["item_ids"]["exact_repeats"] == 1 and len(data.titles) == 4


def test_truncated_last_row_is_an_error(tmp_path):
    rows = [*ROWS, "u1,i2,88125"]  # 1000000012 cut short, no line terminator
    fails(table(tmp_path, rows, end=""), "log.csv:14:", "'88125'", "truncated")


def test_last_row_without_newline_but_complete_is_accepted(tmp_path):
    assert prepare_dataset(table(tmp_path, ROWS, end="")).is_dir()


def test_truncated_last_row_of_a_sample_csv(tmp_path):
    rows = ["user_id,item_ids,timestamp", '0,"[1, 2, 3]",1600000000', '1,"[2, 3, 1]",16000']
    (tmp_path / "train.csv").write_text("\n".join(rows))
    (tmp_path / "id2name4Rec.json").write_text(json.dumps({"1": "A", "2": "B", "3": "C"}))
    source = SourceConfig(kind="seqcsv", path=str(tmp_path))
    cfg = DataConfig(source, PrepareConfig(kcore=0), cache_dir=str(tmp_path / "cache"))
    fails(cfg, "train.csv:3:", "'16000'", "truncated")


def test_header_only_interactions_file_names_that_file(tmp_path):
    message = fails(table(tmp_path, [], end=""), "log.csv", "no data rows")
    assert "items.csv" not in message


def test_header_only_sample_csv_names_that_file(tmp_path):
    (tmp_path / "train.csv").write_text("user_id,item_ids,timestamp\n")
    (tmp_path / "id2name4Rec.json").write_text(json.dumps({"1": "A"}))
    source = SourceConfig(kind="seqcsv", path=str(tmp_path))
    cfg = DataConfig(source, PrepareConfig(kcore=0), cache_dir=str(tmp_path / "cache"))
    fails(cfg, "train.csv", "no data rows")


def _amazon(tmp_path: Path, meta: list[dict]) -> DataConfig:
    reviews = [
        {"reviewerID": f"A{u}", "asin": f"B{i}", "unixReviewTime": 1500000000 + 10 * u + i}
        for u in range(6)
        for i in range(4)
    ]
    (tmp_path / "Toys_5.json").write_text("\n".join(json.dumps(r) for r in reviews) + "\n")
    (tmp_path / "meta_Toys.json").write_text("\n".join(json.dumps(m) for m in meta) + "\n")
    source = SourceConfig(kind="amazon2018", path=str(tmp_path), category="Toys")
    return DataConfig(source, PrepareConfig(kcore=0), cache_dir=str(tmp_path / "cache"))


def test_amazon_metadata_without_any_title_names_the_field(tmp_path):
    meta = [{"asin": f"B{i}", "name": f"Toy {i}"} for i in range(3)]
    fails(
        _amazon(tmp_path, meta), "meta_Toys.json", "no record has the field 'title'", "asin, name"
    )


def test_amazon_records_without_title_are_dropped_and_counted(tmp_path):
    meta = [{"asin": f"B{i}", "title": f"Toy {i}"} for i in range(3)] + [{"asin": "B3"}]
    data = PreparedDataset.load(prepare_dataset(_amazon(tmp_path, meta)))
    assert data.titles == ["Toy 0", "Toy 1", "Toy 2"]
    assert data.card["reports"]["source"]["meta_records_without_title_field"] == 1
    assert data.card["reports"]["items"]["untitled_item_interactions"] == 6


def test_header_only_recbole_inter_names_that_file(tmp_path):
    folder = tmp_path / "mini"
    folder.mkdir()
    (folder / "mini.inter").write_text("user_id:token\titem_id:token\ttimestamp:float\n")
    (folder / "mini.item").write_text(
        "item_id:token\tmovie_title:token_seq\trelease_year:token\tclass:token_seq\n"
        "1\tHeat\t1995\tCrime\n"
    )
    source = SourceConfig(kind="recbole", path=str(folder))
    cfg = DataConfig(source, PrepareConfig(kcore=0), cache_dir=str(tmp_path / "cache"))
    message = fails(cfg, "mini.inter", "no interactions read")
    assert "mini.item" not in message
