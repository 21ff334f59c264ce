import logging
import math

import numpy as np
import pytest

from recbias.metrics.ranking import (
    hit_rate,
    ndcg,
    per_sample_metrics,
    ranking_metrics,
    target_ranks,
    valid_ratio,
)


def test_target_ranks_finds_position_or_minus_one():
    items = np.array([[4, 2, 9], [1, 5, 3], [7, 8, 6]])
    assert target_ranks(items, np.array([2, 3, 0])).tolist() == [1, 2, -1]


def test_target_ranks_first_occurrence_wins():
    assert target_ranks(np.array([[5, 1, 5]]), np.array([5])).tolist() == [0]


def test_target_ranks_empty_slot_never_matches():
    assert target_ranks(np.array([[-1, -1]]), np.array([3])).tolist() == [-1]


def test_target_ranks_rejects_negative_target():
    with pytest.raises(ValueError, match="targets"):
        target_ranks(np.array([[-1, 2]]), np.array([-1]))


def test_ndcg_perfect():
    m = ranking_metrics(np.array([[3, 1], [2, 0]]), np.array([3, 2]), ks=(1, 2))
    assert m["NDCG@1"] == m["NDCG@2"] == m["HR@1"] == m["HR@2"] == 1.0


def test_ndcg_no_match():
    m = ranking_metrics(np.array([[3, 1], [2, 0]]), np.array([4, 5]), ks=(1, 2))
    assert all(m[key] == 0.0 for key in ("HR@1", "HR@2", "NDCG@1", "NDCG@2"))


def test_ndcg_target_at_rank_two_is_half():
    assert ndcg(np.array([2]), 3)[0] == pytest.approx(1 / math.log2(4)) == 0.5


def test_hit_and_ndcg_cut_at_k():
    ranks = np.array([0, 1, 2, -1])
    assert hit_rate(ranks, 2).tolist() == [1.0, 1.0, 0.0, 0.0]
    assert ndcg(ranks, 2).tolist() == pytest.approx([1.0, 1 / math.log2(3), 0.0, 0.0])


def test_mixed_lists_hand_computed():
    items = np.array([[1, 2, 3], [4, 5, 6], [7, 8, 9], [1, 2, 3]])
    targets = np.array([1, 5, 9, 0])  # ranks 0, 1, 2, absent
    m = ranking_metrics(items, targets, ks=(1, 3))
    assert m["HR@1"] == 0.25
    assert m["HR@3"] == 0.75
    assert m["NDCG@1"] == 0.25
    assert m["NDCG@3"] == pytest.approx((1 + 1 / math.log2(3) + 0.5) / 4)
    assert m["n"] == 4


def test_empty_slots_count_as_misses_and_lower_valid_ratio():
    items = np.array([[2, -1, -1, -1], [-1, -1, -1, -1]])
    m = ranking_metrics(items, np.array([2, 2]), ks=(1,))
    assert m["HR@1"] == 0.5  # the sample with no valid output still counts in the mean
    assert m["valid_ratio"] == 1 / 8


def test_valid_ratio_of_full_lists_is_one():
    assert valid_ratio(np.array([[0, 1], [2, 3]])) == 1.0


def test_k_beyond_list_length_equals_list_length_and_is_reported(caplog):
    items = np.array([[1, 2], [3, 4]])
    with caplog.at_level(logging.WARNING, logger="recbias.metrics.ranking"):
        m = ranking_metrics(items, np.array([2, 5]), ks=(2, 20))
    assert m["HR@20"] == m["HR@2"] == 0.5
    assert m["NDCG@20"] == m["NDCG@2"]
    assert m["list_length"] == 2
    assert "@[20] equal @2" in caplog.text


def test_per_sample_metrics_keys_in_report_order():
    out = per_sample_metrics(np.array([[0]]), np.array([0]), ks=(1, 5))
    assert list(out) == ["HR@1", "HR@5", "NDCG@1", "NDCG@5"]


def test_ks_must_be_distinct_positive():
    with pytest.raises(ValueError, match="ks"):
        ranking_metrics(np.array([[0]]), np.array([0]), ks=(0, 1))


def test_agrees_with_plain_loop_on_random_lists():
    rng = np.random.default_rng(1)
    items = np.array([rng.permutation(30)[:10] for _ in range(200)])
    items[rng.random(items.shape) < 0.1] = -1
    targets = rng.integers(0, 30, 200)
    m = ranking_metrics(items, targets, ks=(1, 5, 10))
    for k in (1, 5, 10):
        hr = dcg = 0.0
        for row, t in zip(items.tolist(), targets.tolist(), strict=True):
            if t in row[:k]:
                hr += 1
                dcg += 1 / math.log2(row.index(t) + 2)
        assert m[f"HR@{k}"] == pytest.approx(hr / 200)
        assert m[f"NDCG@{k}"] == pytest.approx(dcg / 200)
