"""Attention per history item at the decision position of an LLM recommender."""

import numpy as np
import pytest
import torch

import tiny
from recbias.diagnostics.history_attention import (
    history_attention,
    near_share,
    share_by_recency,
    uniform_near_share,
)
from recbias.lm.batching import TokenizedSample

HISTORIES = [[0, 1, 2], [3], [4, 5, 6, 7], [2, 6]]


def _samples(tok, titles=tiny.MOVIES):
    builder = tiny.movie_builder(tok)
    return [
        TokenizedSample(i, 0, builder.encode([titles[j] for j in h], h))
        for i, h in enumerate(HISTORIES)
    ]


def _uniform(model):
    """Zero query/key projections: every causal attention row is uniform over its prefix."""
    with torch.no_grad():
        for layer in model.model.layers:
            layer.self_attn.q_proj.weight.zero_()
            layer.self_attn.k_proj.weight.zero_()
    return model


def test_uniform_attention_gives_each_item_its_token_share(byte_tok):
    model = _uniform(tiny.tiny_llama(len(byte_tok)))
    samples = _samples(byte_tok)
    att = history_attention(model, samples, pad_id=0, batch_size=3)
    for row, s in enumerate(samples):
        n = len(s.prompt.input_ids)
        spans = s.prompt.spans_of("history")
        expect = [(sp.end - sp.start) / n for sp in spans]
        got = att.mass[row, -len(spans) :]
        np.testing.assert_allclose(got, expect, rtol=1e-5)
        assert np.isnan(att.mass[row, : -len(spans)]).all()
        np.testing.assert_allclose(att.share[row, -len(spans) :].sum(), 1.0, rtol=1e-6)
    assert att.lengths.tolist() == [3, 1, 4, 2]


def test_right_padded_batches_equal_one_sample_at_a_time(byte_tok):
    model = tiny.tiny_llama(len(byte_tok), seed=5)
    samples = _samples(byte_tok)
    batched = history_attention(model, samples, pad_id=0, batch_size=4)
    for row, s in enumerate(samples):
        alone = history_attention(model, [s], pad_id=0)
        n = len(s.prompt.spans_of("history"))
        np.testing.assert_allclose(batched.mass[row, -n:], alone.mass[0, -n:], rtol=1e-5, atol=1e-7)


def test_near_share_and_recency_profile_by_hand():
    from recbias.diagnostics.history_attention import HistoryAttention

    share = np.array([[np.nan, 0.2, 0.3, 0.5], [0.1, 0.1, 0.2, 0.6]])
    att = HistoryAttention(share, share, np.array([3, 4]))
    np.testing.assert_allclose(near_share(att, 2), [0.8, 0.8])
    np.testing.assert_allclose(uniform_near_share(att, 2), [2 / 3, 0.5])
    np.testing.assert_allclose(share_by_recency(att), [0.55, 0.25, 0.15, 0.1])


def test_the_attention_implementation_is_restored(byte_tok):
    model = tiny.tiny_llama(len(byte_tok))
    model.set_attn_implementation("sdpa")
    history_attention(model, _samples(byte_tok)[:1], pad_id=0)
    assert model.config._attn_implementation == "sdpa"


def test_no_samples_is_an_error(byte_tok):
    from recbias.errors import ModelError

    with pytest.raises(ModelError, match="at least one sample"):
        history_attention(tiny.tiny_llama(len(byte_tok)), [], pad_id=0)


def test_positional_summary_leaves_out_histories_within_the_window(tmp_path):
    from recbias.diagnostics.history_attention import (
        HistoryAttention,
        positional_section,
        positional_summary,
    )

    share = np.array([[np.nan, 0.2, 0.3, 0.5], [0.1, 0.1, 0.2, 0.6], [np.nan, np.nan, 0.5, 0.5]])
    att = HistoryAttention(share * 0.5, share, np.array([3, 4, 2]))
    s = positional_summary(att, window=2, n_boot=50)
    assert s["samples"] == 2
    assert s["near_share"] == pytest.approx(0.8)
    assert s["uniform_share"] == pytest.approx((2 / 3 + 0.5) / 2)
    assert s["ratio"] == pytest.approx(0.8 / ((2 / 3 + 0.5) / 2))
    assert s["last_item_share"] == pytest.approx(0.55)
    assert s["history_mass"] == pytest.approx(0.5)
    sec = positional_section({"llm": att}, tmp_path, window=2, n_boot=50)
    assert sec.tables[0].rows[0][:2] == ["llm", 2]
    assert (tmp_path / sec.figures[0].file).is_file()
