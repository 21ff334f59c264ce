"""The peers' export is complete (info.txt) and says when their scores can differ from ours."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd

from recbias.cli import main
from recbias.data.card import card_lines, peer_title_caveats
from recbias.evaluation.predictions import Recommendations, export_peer_json

TITLES = ["Toy Story", "Heat", "Star Wars", "Casino", "Alien"]


def _export(tmp_path, titles):
    items = np.array([[1, 2, -1], [0, 4, 3]])
    samples = pd.DataFrame({"sample_id": [0, 1], "user": ["a", "b"], "target": [2, 3]})
    recs = Recommendations(items, np.zeros(items.shape), np.arange(2))
    export_peer_json(tmp_path / "llm.peer.json", samples, recs, titles)
    return json.loads((tmp_path / "llm.peer.json").read_text())


def _d3_invalid_count(records, info_path) -> int:
    """D3 calc.py's CC: predictions whose normalised title is not in the info file."""
    names = {line.split("\t")[0].strip(' "') for line in info_path.read_text().splitlines()}
    return sum(
        p.strip(" \n").strip('"').strip(" ") not in names for r in records for p in r["predict"]
    )


def test_export_writes_the_item_file_calc_py_needs(tmp_path):
    records = _export(tmp_path, TITLES)
    info = tmp_path / "info.txt"
    assert info.read_text().splitlines() == [f"{t}\t{i}" for i, t in enumerate(TITLES)]
    assert _d3_invalid_count(records, info) == 1  # the one empty slot
    caveats = json.loads((tmp_path / "peer_titles.json").read_text())
    assert caveats["agrees_with_ours"] and caveats["collisions"] == 0


def test_titles_that_collide_for_the_peers_are_recorded(tmp_path):
    titles = [*TITLES[:3], '"Heat"', TITLES[4]]  # D3 strips the quotes: equals "Heat"
    _export(tmp_path, titles)
    caveats = json.loads((tmp_path / "peer_titles.json").read_text())
    assert caveats["collisions"] == 1 and caveats["collision_examples"] == [["Heat", '"Heat"']]
    assert caveats["non_portable"] == 1 and not caveats["agrees_with_ours"]


def test_caveats_of_clean_titles():
    assert peer_title_caveats(["A b", "C"])["agrees_with_ours"]
    assert peer_title_caveats(["A b", ""])["non_portable"] == 1


def test_prepare_prints_the_card(tmp_path, capsys):
    (tmp_path / "log.csv").write_text(
        "user_id,item_id,timestamp\n"
        + "".join(f"u{u},i{i},{1000 + 10 * u + i}\n" for u in range(4) for i in range(5))
    )
    (tmp_path / "items.csv").write_text(
        "item_id,title\n" + "".join(f"i{i},Title {i}\n" for i in range(5)) + "i9,\n"
    )
    cfg = tmp_path / "c.toml"
    cfg.write_text(f"""
[data]
cache_dir = "{tmp_path / "cache"}"
[data.source]
kind = "table"
interactions = "{tmp_path / "log.csv"}"
items = "{tmp_path / "items.csv"}"
[data.prepare]
kcore = 0
""")
    assert main(["prepare", str(cfg)]) == 0
    out = capsys.readouterr().out
    for fragment in ("log.csv 20", "items.csv 6", "empty 1", "peer scorers"):
        assert fragment in out, out


def test_card_lines_show_given_split_changes():
    card = {
        "name": "Toy", "kind": "seqcsv", "counts": {"items": 3},
        "splits": {"test": {"samples": 5, "samples_before_subsample": 5, "users": 2}},
        "reports": {"given": {
            "files": {"train": "train.csv", "test": "test.csv"}, "valid_from": "train_tail",
            "moved_to_valid": 4,
            "splits": {"test": {"rows": 6, "dropped_target_unusable": 1, "histories_truncated": 0}},
        }},
    }  # fmt: skip
    lines = dict(card_lines(card))
    assert lines["given test"] == "6 rows; dropped_target_unusable 1"
    assert "4 train samples moved" in lines["given split"]
