from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

import tiny
from recbias.diagnostics.groups import (
    equal_groups,
    genre_grouping,
    genres_of,
    item_relevance,
    popularity_grouping,
    relevance_grouping,
)
from recbias.errors import DataError
from recbias.objectives.relevance import masked_prompt

TITLES = tiny.MOVIES


def test_genre_split_weights():
    g = genre_grouping([["Comedy", "Action"], ["Drama"], [], ["Action", "Action"]])
    assert g.labels == ["Action", "Comedy", "Drama"]
    np.testing.assert_allclose(g.weights, [[0.5, 0.5, 0], [0, 0, 1], [0, 0, 0], [1, 0, 0]])
    assert g.group_of().tolist() == [0, 2, -1, 0]


def test_genre_keep_filters_like_sprec_genre_dict():
    g = genre_grouping([["Comedy", "Action", "War"], ["War"]], keep=["Action", "Comedy"])
    np.testing.assert_allclose(g.weights, [[0.5, 0.5], [0, 0]])


def test_popularity_quintiles_distinct_counts_are_equal_sized():
    g = popularity_grouping(np.arange(10)[::-1])
    assert g.group_of().tolist() == [0, 0, 1, 1, 2, 2, 3, 3, 4, 4]
    assert g.labels[0] == "P1 (most popular)"


def test_popularity_quintiles_keep_ties_together():
    g = popularity_grouping(np.array([5, 5, 5, 5, 4, 3, 2, 1, 0, 0]))
    # the tie block of 5s fills the first 40% -> the second bin is empty and dropped
    assert g.group_of().tolist() == [0, 0, 0, 0, 1, 1, 2, 2, 3, 3]
    assert g.n_groups == 4


def test_equal_groups_leave_nan_ungrouped():
    assert equal_groups(np.array([0.1, np.nan, 0.3, 0.2]), 3).tolist() == [2, -1, 0, 1]


def test_genres_of_needs_the_column():
    items = pd.DataFrame({"item": [0, 1], "genres": [["A"], None]})
    assert genres_of(items) == [["A"], []]
    with pytest.raises(DataError, match="no column 'genres'"):
        genres_of(items.drop(columns="genres"))
    with pytest.raises(DataError, match="item 0"):
        genres_of(pd.DataFrame({"item": [0], "genres": ["A|B"]}))


def _plain_relevance(model, prompt, seq):
    ids = torch.tensor([prompt + seq])
    with torch.no_grad():
        logp = torch.log_softmax(model(input_ids=ids).logits[0].float(), dim=-1)
    steps = torch.arange(len(prompt) - 1, len(prompt) + len(seq) - 1)
    return float(logp[steps, torch.tensor(seq)].mean())


@pytest.mark.parametrize("which", ["byte", "meta"])
def test_item_relevance_equals_plain_forward(which, byte_tok, meta_tok):
    tok = byte_tok if which == "byte" else meta_tok
    model = tiny.tiny_llama(len(tok))
    builder = tiny.movie_builder(tok)
    rel = item_relevance(model, builder, TITLES, batch_size=3)
    prompt = masked_prompt(builder)
    expected = [_plain_relevance(model, prompt, builder.encode_target(t)) for t in TITLES]
    np.testing.assert_allclose(rel, expected, atol=1e-4)
    g = relevance_grouping(rel, n_groups=4)
    assert g.group_of()[np.argmax(rel)] == 0
    assert np.bincount(g.group_of()).tolist() == [2, 2, 2, 2]


def test_item_relevance_subset_leaves_nan(byte_tok):
    model = tiny.tiny_llama(len(byte_tok))
    builder = tiny.movie_builder(byte_tok)
    rel = item_relevance(model, builder, TITLES, items=[1, 4])
    assert np.isnan(rel[[0, 2, 3, 5, 6, 7]]).all() and not np.isnan(rel[[1, 4]]).any()
