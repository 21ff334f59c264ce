"""Co-occurrence rates (GDRT Figure 5): a plain reference, hand-computed facts, the section."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pandas as pd
import pytest

import tiny
from recbias.diagnostics.cooccurrence import cooccurrence_rates, cooccurrence_section
from recbias.errors import DataError

TITLES = ["Toy Story", "Toy Story 2", "Heat", "Heat Wave", "Casino", "Star Wars", "Star Trek"]
SAMPLES = pd.DataFrame(
    {"history": [[0, 2], [0], [4, 5, 2], [3, 6], [1]], "target": [1, 1, 3, 5, 6]}
)


def _reference(builder, samples) -> dict[str, tuple[float, float]]:
    """Dict-and-loop version of the definitions: (pair rate, weighted rate) per context type."""
    eos = builder.tokenizer.eos_token_id
    pairs = {k: Counter() for k in ("task", "prefix", "history")}
    n_b: Counter = Counter()
    for hist, target in zip(samples.history, samples.target, strict=True):
        enc = builder.encode([TITLES[i] for i in hist], list(hist), TITLES[target])
        hist_pos = {p for s in enc.spans_of("history") for p in range(s.start, s.end)}
        ctx = {
            "task": {t for p, t in enumerate(enc.input_ids) if p not in hist_pos},
            "history": {enc.input_ids[p] for p in hist_pos},
        }
        y = [t for t in enc.target_ids if t != eos]
        n_b.update(set(y))
        for kind in ("task", "history"):
            pairs[kind].update((a, b) for a in ctx[kind] for b in set(y))
        pairs["prefix"].update({(y[s], y[t]) for t in range(1, len(y)) for s in range(t)})
    out = {}
    for kind, c in pairs.items():
        rates = np.array([v / n_b[b] for (_, b), v in c.items()])
        counts = np.array(list(c.values()), dtype=float)
        out[kind] = (rates.mean(), (counts * rates).sum() / counts.sum())
    return out


def test_matches_plain_reference(any_tok):
    builder = tiny.movie_builder(any_tok)
    got = {r.context: r for r in cooccurrence_rates(builder, SAMPLES, TITLES)}
    for kind, (pair, weighted) in _reference(builder, SAMPLES).items():
        assert got[kind].pair_rate == pytest.approx(pair)
        assert got[kind].weighted_rate == pytest.approx(weighted)


def test_task_pairs_have_rate_one_and_exceed_history(byte_tok):
    rates = {
        r.context: r for r in cooccurrence_rates(tiny.movie_builder(byte_tok), SAMPLES, TITLES)
    }
    assert rates["task"].pair_rate == pytest.approx(1.0)
    assert rates["task"].weighted_rate == pytest.approx(1.0)
    assert rates["history"].pair_rate < 1.0
    assert [r for r in rates] == ["task", "prefix", "history"]


def test_history_equal_to_target_gives_full_overlap(byte_tok):
    samples = pd.DataFrame({"history": [[2], [4]], "target": [2, 4]})
    rates = {
        r.context: r for r in cooccurrence_rates(tiny.movie_builder(byte_tok), samples, TITLES)
    }
    # every target token (quotes included) also occurs in the quoted history title
    assert rates["history"].overlap == 1.0
    assert rates["history"].pair_rate <= 1.0


def test_single_sample_rates_are_one(byte_tok):
    one = SAMPLES.iloc[:1]
    for r in cooccurrence_rates(tiny.movie_builder(byte_tok), one, TITLES):
        assert r.pair_rate == pytest.approx(1.0)  # n(b) = 1: every observed pair always co-occurs


def test_empty_samples_raise(byte_tok):
    with pytest.raises(DataError, match="no training samples"):
        cooccurrence_rates(tiny.movie_builder(byte_tok), SAMPLES.iloc[:0], TITLES)


def test_section(tmp_path, byte_tok):
    sec = cooccurrence_section(
        cooccurrence_rates(tiny.movie_builder(byte_tok), SAMPLES, TITLES), tmp_path
    )
    assert [row[0] for row in sec.tables[0].rows] == ["task", "prefix", "history"]
    assert (tmp_path / sec.figures[0].file).read_bytes()[:4] == b"\x89PNG"
