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
from recbias.errors import DataError, RecbiasError
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
    assert g.labels[0] == "P1 (most popular, counts 8–9)"
    assert g.labels[4] == "P5 (counts 0–1)"


def test_popularity_groups_cut_ties_by_item_id_hand_computed():
    counts = np.array([3, 0, 5, 3, 0, 0, 1, 3, 0, 2])
    # sorted by count, ties by id: 2 (5) | 0 3 7 (3) | 9 (2) | 6 (1) | 1 4 5 8 (0)
    # 10 items in 3 groups of 4, 3, 3 items: [2 0 3 7] [9 6 1] [4 5 8]
    g = popularity_grouping(counts, 3)
    assert g.group_of().tolist() == [0, 1, 0, 0, 2, 2, 1, 0, 2, 1]
    assert g.labels == ["P1 (most popular, counts 3–5)", "P2 (counts 0–2)", "P3 (counts 0–0)"]


def test_popularity_groups_of_mostly_zero_counts_are_still_g_groups():
    counts = np.array([5, 5, 5, 5, 4, 3, 2, 1, 0, 0])
    g = popularity_grouping(counts)
    # the tie block of 5s is cut by id, where relevance groups would keep it whole (4 groups)
    assert g.group_of().tolist() == [0, 0, 1, 1, 2, 2, 3, 3, 4, 4]
    assert g.n_groups == 5 and int(equal_groups(counts, 5).max()) + 1 == 4


def test_popularity_groups_need_as_many_items_as_groups():
    with pytest.raises(RecbiasError, match="popularity groups"):
        popularity_grouping(np.array([1, 2, 3]), 5)


def test_popularity_groups_on_sampled_data_use_every_training_interaction(table_data, tmp_path):
    from recbias.baselines.popularity import count_items
    from recbias.data import (
        DataConfig,
        PrepareConfig,
        PreparedDataset,
        SourceConfig,
        prepare_dataset,
    )

    source = SourceConfig(
        kind="table",
        interactions=str(table_data / "inter.csv"),
        items=str(table_data / "items.csv"),
    )
    cfg = DataConfig(source, PrepareConfig(kcore=2, train_samples=4), cache_dir=str(tmp_path))
    ds = PreparedDataset.load(prepare_dataset(cfg))
    sampled = count_items(ds.split("train"), len(ds.titles))
    assert (sampled == 0).mean() > 0.5  # most items are never a sampled training target
    g = popularity_grouping(ds.train_popularity(), 5)
    sizes = g.weights.sum(axis=0)
    assert g.n_groups == 5 and sizes.min() >= 3 and sizes.max() - sizes.min() <= 1
    assert ds.train_popularity().sum() > 10 * sampled.sum()


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
