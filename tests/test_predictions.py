import json
import math

import numpy as np
import pandas as pd
import pytest

from recbias.errors import DataError, RecbiasError
from recbias.evaluation.predictions import (
    Recommendations,
    export_peer_json,
    read_predictions_jsonl,
    write_peer_item_file,
    write_predictions_jsonl,
)
from recbias.evaluation.summary import metrics_table_markdown, write_metrics_json
from recbias.metrics.ranking import ranking_metrics

TITLES = ["Toy Story", "Heat", "Star Wars", "Casino", "Alien", "Babe", 'The "Rock"', "Fargo"]


@pytest.fixture
def samples():
    return pd.DataFrame(
        {
            "sample_id": np.array([10, 11, 12], dtype=np.int64),
            "user": ["u1", "u2", "u3"],
            "history": [[0], [1, 2], [3]],
            "target": [2, 6, 5],
            "timestamp": np.array([1, 2, 3], dtype=np.int64),
        }
    )


@pytest.fixture
def recs():
    items = [[2, 4, 1], [3, 0, 6], [-1, -1, -1]]
    scores = [[-0.1, -0.5, -0.9], [-0.2, -0.3, -1.5], [np.nan] * 3]
    return Recommendations(np.array(items), np.array(scores), np.array([10, 11, 12]))


def test_predictions_jsonl_line_format(tmp_path, samples, recs):
    path = tmp_path / "pred.jsonl"
    write_predictions_jsonl(path, samples, recs, TITLES)
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    assert lines[1] == {
        "sample_id": 11,
        "user": "u2",
        "target": 6,
        "target_title": 'The "Rock"',
        "items": [3, 0, 6],
        "titles": ["Casino", "Toy Story", 'The "Rock"'],
        "scores": [-0.2, -0.3, -1.5],
        "rank": 2,
    }
    assert lines[2]["items"] == lines[2]["titles"] == lines[2]["scores"] == [None] * 3
    assert lines[2]["rank"] is None


def test_predictions_round_trip(tmp_path, samples, recs):
    path = tmp_path / "pred.jsonl"
    write_predictions_jsonl(path, samples, recs, TITLES)
    stored = read_predictions_jsonl(path)
    assert stored.sample_ids.tolist() == [10, 11, 12]
    assert stored.targets.tolist() == [2, 6, 5]
    np.testing.assert_array_equal(stored.items, recs.items)
    np.testing.assert_array_equal(stored.scores, recs.scores)  # NaN == NaN here
    assert stored.recommendations().k == 3


def test_writer_reorders_recommendations_to_samples(tmp_path, samples, recs):
    shuffled = Recommendations(recs.items[::-1], recs.scores[::-1], recs.sample_ids[::-1])
    write_predictions_jsonl(tmp_path / "a.jsonl", samples, recs, TITLES)
    write_predictions_jsonl(tmp_path / "b.jsonl", samples, shuffled, TITLES)
    assert (tmp_path / "a.jsonl").read_text() == (tmp_path / "b.jsonl").read_text()


def test_writer_rejects_recommendations_for_other_samples(tmp_path, samples, recs):
    other = Recommendations(recs.items, recs.scores, np.array([10, 11, 99]))
    with pytest.raises(RecbiasError, match="lacks 1 ids of samples"):
        write_predictions_jsonl(tmp_path / "p.jsonl", samples, other, TITLES)
    assert not (tmp_path / "p.jsonl").exists()


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("{not json", r"p\.jsonl:2: not valid JSON"),
        ('{"sample_id": 1, "target": 0, "scores": []}', r":2: missing field 'items'"),
        ('{"sample_id": 1, "target": 0, "items": ["a"], "scores": [1]}', "'items' must be a list"),
        ('{"sample_id": 1, "target": 0, "items": [-1], "scores": [1]}', "item ids ≥ 0 or null"),
        ('{"sample_id": 1, "target": 0, "items": [1, 2], "scores": [1]}', "'scores' has 1"),
        (
            '{"sample_id": "1", "target": 0, "items": [], "scores": []}',
            "'sample_id' must be an int",
        ),
        ('{"sample_id": 0, "target": 0, "items": [], "scores": []}', "duplicate"),
        ("[1, 2]", "expected a JSON object"),
    ],
)
def test_read_predictions_errors_name_line_and_field(tmp_path, line, message):
    path = tmp_path / "p.jsonl"
    path.write_text(
        '{"sample_id": 0, "target": 1, "items": [1, null], "scores": [0.5, null]}\n' + line
    )
    with pytest.raises(DataError, match=message):
        read_predictions_jsonl(path)


def test_read_predictions_pads_ragged_lists(tmp_path):
    path = tmp_path / "p.jsonl"
    rows = [
        {"sample_id": 0, "target": 1, "items": [1], "scores": [0.5]},
        {"sample_id": 1, "target": 2, "items": [2, 3], "scores": [0.1, 0.0]},
    ]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert read_predictions_jsonl(path).items.tolist() == [[1, -1], [2, 3]]


def test_from_lists_pads_and_cuts():
    recs = Recommendations.from_lists([5, 6], [[1, 2, 3], [4]], [[0.3, 0.2, 0.1], [0.9]], k=2)
    assert recs.items.tolist() == [[1, 2], [4, -1]]
    assert recs.scores[1, 0] == 0.9 and np.isnan(recs.scores[1, 1])


# Peer scorers, re-implemented from D3/IGD code/calc.py and MSL evaluate_batch_match.py.
def _d3_rank(record):
    preds = [p.strip(" \n").strip('"').strip(" ") for p in record["predict"]]
    target = record["output"].strip(' \n"')
    return max((i for i, p in enumerate(preds) if p == target), default=math.inf)  # last match


def _igd_rank(record):
    preds = [p.strip(" ").strip("\n") for p in record["predict"]]
    target = record["output"].strip(' \n"')
    return max((i for i, p in enumerate(preds) if p == target), default=math.inf)


def _msl_rank(record):
    preds = [p[1:-1] for p in record["predict"]]
    target = record["output"][1:-1]
    return preds.index(target) if target in preds else math.inf


def _peer_metrics(records, rank_fn, ks):
    ranks = [rank_fn(r) for r in records]
    out = {f"HR@{k}": sum(r < k for r in ranks) / len(ranks) for k in ks}
    out.update(
        {f"NDCG@{k}": sum(1 / math.log2(r + 2) for r in ranks if r < k) / len(ranks) for k in ks}
    )
    return out


def test_peer_scripts_score_export_like_us(tmp_path):
    rng = np.random.default_rng(0)
    titles = [f"Item {i}" for i in range(30)] + ['Weird "Al" Live', "Say 'Hi'"]  # inner quotes ok
    n, k, ks = 120, 10, (1, 3, 5, 10, 20)
    items = np.array([rng.permutation(len(titles))[:k] for _ in range(n)])
    items[rng.random(items.shape) < 0.1] = -1
    targets = np.where(rng.random(n) < 0.5, items[:, 0], rng.integers(0, len(titles), n))
    targets = np.where(targets < 0, 1, targets)
    samples = pd.DataFrame({"sample_id": np.arange(n), "user": "u", "target": targets})
    recs = Recommendations(items, np.zeros(items.shape), np.arange(n))
    export_peer_json(tmp_path / "predict_CBS.json", samples, recs, titles)
    records = json.loads((tmp_path / "predict_CBS.json").read_text())
    ours = ranking_metrics(items, targets, ks)
    assert 0 < ours["HR@1"] < ours["HR@10"] < 1
    for rank_fn in (_d3_rank, _igd_rank, _msl_rank):
        assert _peer_metrics(records, rank_fn, ks) == pytest.approx(
            {m: ours[m] for m in ours if "@" in m}
        )


def test_peer_export_keeps_list_length_and_quotes_output(tmp_path, samples, recs):
    export_peer_json(tmp_path / "p.json", samples, recs, TITLES)
    records = json.loads((tmp_path / "p.json").read_text())
    assert records[0] == {
        "output": '"Star Wars"',
        "predict": ["\nStar Wars\n", "\nAlien\n", "\nHeat\n"],
    }
    assert records[2]["predict"] == ["\n\n"] * 3


def test_peer_export_warns_about_titles_peers_normalise(tmp_path, samples, recs, caplog):
    titles = [*TITLES[:5], '"Babe"', *TITLES[6:]]  # targets '"Babe"' and 'The "Rock"'
    export_peer_json(tmp_path / "p.json", samples, recs, titles)
    assert "2 titles are empty or start/end" in caplog.text


def test_peer_item_file_lists_title_and_id(tmp_path):
    write_peer_item_file(tmp_path / "info.txt", ["Heat", "Babe"])
    assert (tmp_path / "info.txt").read_text() == "Heat\t0\nBabe\t1\n"


def test_metrics_table_shows_ci_and_plain_values():
    rows = {
        "pop": {"HR@1": 0.1, "NDCG@1": 0.1, "n": 100},
        "sft|lora": {"HR@1": {"mean": 0.123, "lo": 0.101, "hi": 0.145}, "NDCG@1": 0.2},
    }
    table = metrics_table_markdown(rows, ks=(1,), digits=3).splitlines()
    assert table[0] == "| run | HR@1 | NDCG@1 | n |"
    assert table[2] == "| pop | 0.100 | 0.100 | 100 |"
    assert table[3] == "| sft\\|lora | 0.123 [0.101, 0.145] | 0.200 | — |"


def test_write_metrics_json_turns_numpy_and_nan_into_plain_json(tmp_path):
    write_metrics_json(
        tmp_path / "m.json", {"run": {"HR@1": np.float64(0.5), "n": np.int64(3), "x": np.nan}}
    )
    assert json.loads((tmp_path / "m.json").read_text()) == {
        "run": {"HR@1": 0.5, "n": 3, "x": None}
    }
