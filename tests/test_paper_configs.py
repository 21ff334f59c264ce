"""Every configs/papers/*.toml loads, and its [data] prepares files of the layout it documents."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from recbias.compare import load_compare_config
from recbias.config import load_config, read_toml
from recbias.data import PreparedDataset, prepare_dataset
from recbias.data.config import DataConfig, resolve_data_config
from recbias.experiment import RunConfig

PAPERS = sorted((Path(__file__).parent.parent / "configs" / "papers").glob("*.toml"))


def data_of(path: Path) -> DataConfig:
    if "base" in read_toml(path):
        return load_compare_config(path, []).base.data
    return load_config(RunConfig, path).data


def with_files(cfg: DataConfig, tmp_path: Path, **source) -> DataConfig:
    return dataclasses.replace(
        cfg,
        source=dataclasses.replace(cfg.source, **source),
        cache_dir=str(tmp_path / "cache"),
    )


def test_there_is_a_config_per_protocol():
    assert {p.stem for p in PAPERS} >= {
        "gdrt_toy", "gdrt_clothing", "gdrt_book", "igd_toys", "d3_amazon2018_toys",
    }  # fmt: skip


@pytest.mark.parametrize("path", PAPERS, ids=[p.name for p in PAPERS])
def test_paper_config_loads_and_names_the_published_table(path):
    resolved = resolve_data_config(data_of(path))  # input paths need not exist to load
    assert resolved.source.path
    text = path.read_text()
    assert "Published" in text or "published" in text
    assert "Files you provide" in text


def _msl_files(folder: Path) -> None:
    folder.mkdir(parents=True)
    rows = ["user_id,item_ids,timestamp"]
    for u in range(10):
        rows += [
            f'{u},"{[(u + t + j) % 12 + 1 for j in range(5)]}",{100 + 10 * u + t}' for t in range(3)
        ]
    (folder / "train.csv").write_text("\n".join(rows) + "\n")
    test = ["user_id,item_ids,timestamp"]
    test += [f'{u},"{[(u + j) % 12 + 1 for j in range(11)]}",{1000 + u}' for u in range(10)]
    (folder / "test.csv").write_text("\n".join(test) + "\n")
    (folder / "id2name4Rec.json").write_text(
        json.dumps({str(i): f"Toy &amp; {i}" for i in range(1, 13)})
    )


@pytest.mark.parametrize("name", ["gdrt_toy", "gdrt_clothing", "gdrt_book"])
def test_gdrt_configs_prepare_the_msl_layout(tmp_path, name):
    _msl_files(tmp_path / "msl")
    cfg = with_files(data_of(PAPERS[[p.stem for p in PAPERS].index(name)]), tmp_path,
                     path=str(tmp_path / "msl"))  # fmt: skip
    data = PreparedDataset.load(prepare_dataset(cfg))
    given = data.card["reports"]["given"]
    assert given["valid_from"] == "train_tail" and given["splits"]["test"]["rows"] == 10
    assert len(data.split("test")) == 10 and len(data.split("valid")) == 3  # 10% of 30
    assert all(len(h) == 10 for h in data.split("test")["history"])


def test_igd_config_prepares_the_d3_layout(tmp_path):
    folder = tmp_path / "d3"
    folder.mkdir()
    header = "user_id,item_asins,item_asin,history_item_id,item_id,history_item_title,item_title,timestamp"
    for split, base in (("train", 0), ("valid", 100), ("test", 200)):
        lines = [header]
        lines += [f'{u},"[]",a,"{[(u + j) % 9 for j in range(4)]}",{(u + 4) % 9},"[]",t,{base + u}'
                  for u in range(6)]  # fmt: skip
        (folder / f"{split}.csv").write_text("\n".join(lines) + "\n")
    (folder / "info.txt").write_text("".join(f"Toy {i}\t{i}\n" for i in range(9)))
    path = PAPERS[[p.stem for p in PAPERS].index("igd_toys")]
    cfg = with_files(data_of(path), tmp_path, path=str(folder), items=str(folder / "info.txt"))
    data = PreparedDataset.load(prepare_dataset(cfg))
    assert {s: len(data.split(s)) for s in ("train", "valid", "test")} == {
        "train": 6, "valid": 6, "test": 6,
    }  # fmt: skip
    assert data.card["reports"]["source"]["file_rows"]["info.txt"] == 9


def test_d3_preprocessing_config_prepares_raw_amazon_2018(tmp_path):
    folder = tmp_path / "amazon"
    folder.mkdir()
    start = 1480550400  # 2016-12-01, inside the configured window
    reviews = [
        {"reviewerID": f"U{u}", "asin": f"A{i}", "unixReviewTime": start + 86400 * (u * 10 + i)}
        for u in range(12)
        for i in range(8)
    ]
    reviews.append({"reviewerID": "U0", "asin": "A0", "unixReviewTime": 1262304000})  # 2010: out
    meta = [{"asin": f"A{i}", "title": f"Toy {i}"} for i in range(8)]
    meta += [{"asin": "A3", "title": "Toy 3 (new edition)"}, {"asin": "A7"}]
    (folder / "Toys_and_Games_5.json").write_text("\n".join(map(json.dumps, reviews)) + "\n")
    (folder / "meta_Toys_and_Games.json").write_text("\n".join(map(json.dumps, meta)) + "\n")
    path = PAPERS[[p.stem for p in PAPERS].index("d3_amazon2018_toys")]
    data = PreparedDataset.load(
        prepare_dataset(with_files(data_of(path), tmp_path, path=str(folder)))
    )
    # duplicate_item_ids = "last": A3 takes its second title, A7's last record has no title
    assert "Toy 3 (new edition)" in data.titles and "Toy 7" not in data.titles
    assert data.card["reports"]["time_window"]["dropped"] == 1
    sizes = {s: len(data.split(s)) for s in ("train", "valid", "test")}
    assert sizes == {"train": 57, "valid": 7, "test": 8}  # 12 users x 6 samples, cut 8:1:1
