from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from recbias.errors import DataError
from recbias.evaluation.loo import (
    full_ranking_metrics,
    full_ranks,
    leave_one_out,
    read_atomic_inter,
)


def _table(rows):
    return pd.DataFrame(rows, columns=["user", "item", "timestamp"])


# Rows in file order. User a: times 5, 1, 3, 3, 9 -> chronological a2(1) a3(3) a4(3) a1(5) a5(9);
# a3 and a4 tie at 3 and keep file order. User b has 3 interactions, c 2, d 1.
TINY = _table(
    [
        ("a", "i1", 5), ("b", "i2", 2), ("a", "i2", 1), ("a", "i3", 3), ("c", "i1", 4),
        ("a", "i4", 3), ("b", "i3", 1), ("a", "i5", 9), ("b", "i1", 7), ("c", "i5", 3),
        ("d", "i2", 8),
    ]
)  # fmt: skip
ID = {"i1": 0, "i2": 1, "i3": 2, "i4": 3, "i5": 4}  # first appearance in the file


def _rows(frame):
    return [(r.user, r.history, r.target) for r in frame.itertuples()]


def test_leave_one_out_by_hand():
    split = leave_one_out(TINY, max_len=50)
    i1, i2, i3, i4, i5 = (ID[k] for k in ("i1", "i2", "i3", "i4", "i5"))
    assert split.item_tokens.tolist() == ["i1", "i2", "i3", "i4", "i5"] and split.n_items == 5
    # a: i2 i3 i4 i1 i5 -> 4 samples: 2 train, valid, test. b: i3 i2 i1 -> 1 train + test.
    # c: i5 i1 -> one sample, train only. d: no sample.
    assert sorted(_rows(split.train)) == sorted(
        [("a", [i2], i3), ("a", [i2, i3], i4), ("b", [i3], i2), ("c", [i5], i1)]
    )
    assert _rows(split.valid) == [("a", [i2, i3, i4], i1)]
    assert sorted(_rows(split.test)) == [("a", [i2, i3, i4, i1], i5), ("b", [i3, i2], i1)]
    ids = pd.concat([split.train, split.valid, split.test])["sample_id"]
    assert ids.is_unique
    assert list(split.test.columns) == ["sample_id", "user", "history", "target", "timestamp"]


def test_history_window_keeps_the_most_recent_items():
    rows = [("u", f"i{t}", t) for t in range(6)]
    split = leave_one_out(_table(rows), max_len=2)
    assert _rows(split.test) == [("u", [3, 4], 5)]
    assert _rows(split.valid) == [("u", [2, 3], 4)]
    assert [len(h) for h in split.train["history"]] == [1, 2, 2]


def test_input_order_does_not_matter_except_for_ties():
    shuffled = TINY.sample(frac=1.0, random_state=3)
    a, b = leave_one_out(TINY), leave_one_out(shuffled)
    tokens_a, tokens_b = a.item_tokens, b.item_tokens

    def named(frame, tokens):
        return sorted((u, [tokens[i] for i in h], tokens[t]) for u, h, t in _rows(frame))

    # Only user a has a tie (i3, i4 at time 3); compare the other users' samples.
    for part in ("train", "test"):
        rows_a = [r for r in named(getattr(a, part), tokens_a) if r[0] != "a"]
        rows_b = [r for r in named(getattr(b, part), tokens_b) if r[0] != "a"]
        assert rows_a == rows_b


def test_read_atomic_inter(tmp_path):
    path = tmp_path / "x.inter"
    path.write_text(
        "user_id:token\titem_id:token\trating:float\ttimestamp:float\n"
        "196\t242\t3\t881250949\n186\t302\t3\t891717742\n"
    )
    frame = read_atomic_inter(path)
    assert frame.to_dict("list") == {
        "user": ["196", "186"],
        "item": ["242", "302"],
        "timestamp": [881250949, 891717742],
    }
    path.write_text("user_id:token\titem:token\ttimestamp:float\n1\t2\t3\n")
    with pytest.raises(DataError, match=r"x\.inter: missing columns \['item_id:token'\]"):
        read_atomic_inter(path)
    path.write_text("user_id:token\titem_id:token\ttimestamp:float\n1\t2\tsoon\n")
    with pytest.raises(DataError, match=r"x\.inter: line 2: field 'timestamp:float'"):
        read_atomic_inter(path)


def _reference_metrics(scores, targets, k):
    """A plain loop: sort each row (ties by id), find the target, score it."""
    out = {"Recall": 0.0, "MRR": 0.0, "NDCG": 0.0}
    for row, target in zip(scores, targets, strict=True):
        order = sorted(range(len(row)), key=lambda i: (-row[i], i))
        rank = order.index(target) + 1
        if rank <= k:
            out["Recall"] += 1
            out["MRR"] += 1 / rank
            out["NDCG"] += 1 / math.log2(rank + 1)
    return {f"{name}@{k}": total / len(targets) for name, total in out.items()}


def test_full_ranking_metrics_match_a_reference_loop():
    rng = np.random.default_rng(0)
    scores = rng.normal(size=(50, 30)).round(1)  # rounding creates ties
    targets = rng.integers(0, 30, size=50)
    got = full_ranking_metrics(scores, targets, k=5)
    want = _reference_metrics(scores, targets, 5)
    for key, value in want.items():
        assert got[key] == pytest.approx(value)
    assert got["Hit@5"] == got["Recall@5"]
    assert got["Precision@5"] == pytest.approx(got["Recall@5"] / 5)


def test_full_ranks_by_hand():
    scores = np.array([[0.1, 0.9, 0.5, 0.9], [1.0, 1.0, 1.0, 1.0], [0.0, -np.inf, 2.0, 1.0]])
    assert full_ranks(scores, np.array([3, 2, 0])).tolist() == [1, 2, 2]
    assert full_ranking_metrics(np.eye(3), np.arange(3), k=1)["NDCG@1"] == 1.0
    assert full_ranking_metrics(np.eye(3), np.array([1, 2, 0]), k=1)["MRR@1"] == 0.0


def _cycle_interactions(n_users=40, n_items=8, length=12):
    """Every user walks the item cycle from a different start: next item = item + 1 mod n."""
    rows = [
        (f"u{u}", f"i{(u + t) % n_items}", 1000 * u + t)
        for u in range(n_users)
        for t in range(length)
    ]
    return _table(rows)


def test_shipped_config_loads_and_validates():
    from pathlib import Path

    from recbias.config import load_config
    from recbias.evaluation.loo import SeqRecConfig

    path = Path(__file__).resolve().parents[1] / "configs" / "seqrec_ml100k.toml"
    cfg = load_config(SeqRecConfig, path)
    cfg.validate()
    assert cfg.models == ["popularity", "gru4rec", "sasrec"]
    assert cfg.baselines.sasrec.ffn == 256 and cfg.baselines.gru4rec.hidden == 128


def test_config_errors_name_the_key():
    from recbias.errors import ConfigError
    from recbias.evaluation.loo import SeqRecConfig

    with pytest.raises(ConfigError, match=r"config key 'models\[0\]'"):
        SeqRecConfig(models=["bert4rec"]).validate()
    cfg = SeqRecConfig()
    cfg.baselines.gru4rec.loss = "bpr"
    with pytest.raises(ConfigError, match=r"config key 'baselines\.gru4rec\.loss'"):
        cfg.validate()


def test_run_seqrec_end_to_end_on_a_learnable_split():
    from recbias.evaluation.loo import SeqRecConfig, run_seqrec

    split = leave_one_out(_cycle_interactions(), max_len=5)
    cfg = SeqRecConfig(models=["popularity", "gru4rec"], max_len=5, k=1)
    cfg.baselines.gru4rec = cfg.baselines.gru4rec.__class__(
        embedding=16, hidden=16, max_len=5, epochs=40, lr=1e-2, batch_size=32, dropout=0.0
    )
    results = run_seqrec(cfg, split)
    assert results["gru4rec"]["test"]["Recall@1"] >= 0.9
    assert results["popularity"]["test"]["Recall@1"] <= 0.3
    assert len(results["gru4rec"]["epoch_seconds"]) == 40


def test_read_atomic_items_aligns_titles_and_genres_with_our_ids(tmp_path):
    from recbias.evaluation.loo import read_atomic_items

    path = tmp_path / "x.item"
    path.write_text(
        "item_id:token\tmovie_title:token_seq\trelease_year:token\tclass:token_seq\n"
        "7\tHeat\t1995\tAction Crime\n3\tBabe\t1995\tChildren's Comedy\n"
    )
    items = read_atomic_items(path, np.array(["3", "7"]))
    assert items["title"].tolist() == ["Babe", "Heat"]
    assert items["genres"].tolist() == [["Children's", "Comedy"], ["Action", "Crime"]]
    with pytest.raises(DataError, match=r"x.item: no row for item ids \['9'\]"):
        read_atomic_items(path, np.array(["3", "9"]))


def test_genrec_runs_on_the_leave_one_out_protocol():
    import dataclasses

    from recbias.evaluation.loo import SeqRecConfig, run_seqrec
    from recbias.genrec.config import GenRecConfig

    split = leave_one_out(_cycle_interactions(), max_len=5)
    items = pd.DataFrame(
        {"title": [f"film {t}" for t in split.item_tokens], "genres": [["A"]] * split.n_items}
    )
    split = dataclasses.replace(split, items=items)
    genrec = GenRecConfig(
        encoder="tfidf", tfidf_dim=8, levels=2, codebook_size=3, d_model=32, heads=2,
        ff_dim=64, max_len=5, epochs=25, lr=3e-3, dropout=0.0, beam_size=8,
    )  # fmt: skip
    cfg = SeqRecConfig(models=["genrec"], max_len=5, k=1, genrec=genrec, seed=0)
    results = run_seqrec(cfg, split)
    assert results["genrec"]["test"]["Recall@1"] >= 0.9
    with pytest.raises(DataError, match="genrec needs item texts"):
        run_seqrec(cfg, dataclasses.replace(split, items=None))
