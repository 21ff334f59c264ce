import numpy as np
import pandas as pd
import pytest

from recbias.baselines.popularity import PopularityRecommender, count_items, popularity_order
from recbias.errors import DataError, RecbiasError
from recbias.recs import Recommender


def _samples(rows):
    """rows: (user, history, target); sample ids count from 100."""
    return pd.DataFrame(
        {
            "sample_id": np.arange(100, 100 + len(rows), dtype=np.int64),
            "user": [r[0] for r in rows],
            "history": [list(r[1]) for r in rows],
            "target": [r[2] for r in rows],
            "timestamp": np.arange(len(rows), dtype=np.int64),
        }
    )


# Targets: item 2 ×3, item 1 ×2, items 0 and 4 ×1, item 3 ×0.
TRAIN = _samples(
    [
        ("u1", [0], 2),
        ("u1", [0, 2], 1),
        ("u2", [3], 2),
        ("u2", [3, 2], 4),
        ("u3", [1], 2),
        ("u3", [1, 2], 0),
        ("u4", [2], 1),
    ]
)


def test_target_counts():
    assert count_items(TRAIN, 5).tolist() == [1, 2, 3, 0, 1]


def test_interaction_counts_each_user_item_once():
    # item 1: u1 (target), u3 (history ×2), u4 (target); item 2: u1, u2, u3, u4
    assert count_items(TRAIN, 5, count="interactions").tolist() == [2, 3, 4, 1, 1]


def test_ties_go_to_smaller_item_id():
    assert popularity_order(np.array([1, 2, 3, 0, 1])).tolist() == [2, 1, 0, 4, 3]


def test_same_list_for_everyone_with_counts_as_scores():
    pop = PopularityRecommender().fit(TRAIN, 5)
    recs = pop.recommend(TRAIN.iloc[:2], k=3)
    assert recs.items.tolist() == [[2, 1, 0], [2, 1, 0]]
    assert recs.scores.tolist() == [[3.0, 2.0, 1.0]] * 2
    assert recs.sample_ids.tolist() == [100, 101]


def test_exclude_history_removes_seen_items():
    pop = PopularityRecommender(exclude_history=True).fit(TRAIN, 5)
    test = _samples([("u9", [2, 0], 3), ("u8", [], 3), ("u7", [3], 1)])
    assert pop.recommend(test, k=3).items.tolist() == [[1, 4, 3], [2, 1, 0], [2, 1, 0]]


def test_exclude_history_pads_when_catalogue_runs_out():
    pop = PopularityRecommender(exclude_history=True).fit(TRAIN, 5)
    recs = pop.recommend(_samples([("u9", [0, 1, 2], 3)]), k=4)
    assert recs.items.tolist() == [[4, 3, -1, -1]]
    assert np.isnan(recs.scores[0, 2:]).all()


def test_k_beyond_catalogue_pads_with_empty_slots():
    recs = PopularityRecommender().fit(TRAIN, 5).recommend(TRAIN.iloc[:1], k=7)
    assert recs.items.tolist() == [[2, 1, 0, 4, 3, -1, -1]]


def test_exclude_history_matches_plain_loop_on_random_data():
    rng = np.random.default_rng(0)
    rows = [(f"u{i}", rng.choice(40, rng.integers(0, 12), replace=False), 0) for i in range(300)]
    test = _samples(rows)
    pop = PopularityRecommender(exclude_history=True).fit(
        test.assign(target=rng.integers(0, 40, 300)), 40
    )
    order = popularity_order(pop.item_counts).tolist()
    expected = [[i for i in order if i not in set(h)][:10] for h in test["history"]]
    assert pop.recommend(test, k=10).items.tolist() == expected


def test_is_a_recommender():
    assert isinstance(PopularityRecommender(), Recommender)


def test_recommend_before_fit_is_an_error():
    with pytest.raises(RecbiasError, match="fit"):
        PopularityRecommender().recommend(TRAIN, k=2)


def test_item_id_outside_catalogue_is_an_error():
    with pytest.raises(DataError, match="'target'"):
        count_items(TRAIN, 3)
