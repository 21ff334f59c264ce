from __future__ import annotations

import math

import numpy as np
import pytest

from recbias.errors import DataError, RecbiasError
from recbias.metrics.concentration import (
    concentration,
    coverage,
    div_ratio,
    entropy,
    exposure_counts,
    gini,
    head_items,
    hhi,
    or_ratio,
    tail_share,
)


def _gini_reference(x):
    """Mean absolute difference over twice the mean (the textbook definition)."""
    x = np.asarray(x, dtype=float)
    return np.abs(x[:, None] - x[None, :]).sum() / (2 * len(x) ** 2 * x.mean())


def test_gini_one_item_takes_everything():
    assert gini(np.array([0, 0, 0, 1])) == pytest.approx(0.75)


def test_gini_uniform_is_zero():
    assert gini(np.array([3, 3, 3, 3])) == pytest.approx(0.0)


def test_gini_matches_reference_on_random_counts():
    rng = np.random.default_rng(0)
    for _ in range(5):
        x = rng.integers(0, 20, size=37)
        assert gini(x) == pytest.approx(_gini_reference(x))


def test_gini_is_order_and_scale_invariant():
    x = np.array([5, 0, 2, 9, 1])
    assert gini(x[::-1]) == pytest.approx(gini(x))
    assert gini(3 * x) == pytest.approx(gini(x))


def test_gini_of_nothing_is_nan():
    assert math.isnan(gini(np.zeros(4)))


def test_hhi_hand_computed():
    assert hhi(np.array([1, 1, 2])) == pytest.approx(0.375)
    assert hhi(np.array([0, 7, 0])) == pytest.approx(1.0)


def test_entropy_hand_computed():
    assert entropy(np.array([1, 1])) == pytest.approx(math.log(2))
    assert entropy(np.array([1, 1, 0, 0]), normalized=True) == pytest.approx(0.5)
    assert entropy(np.array([0, 4, 0])) == pytest.approx(0.0)


def test_coverage_div_ratio_or_ratio_and_empty_slots():
    items = np.array([[0, 1], [1, -1]])
    counts = exposure_counts(items, 4)
    assert counts.tolist() == [1, 2, 0, 0]
    assert coverage(counts) == pytest.approx(0.5)
    assert div_ratio(counts) == pytest.approx(2 / 3)
    assert or_ratio(counts, top=1) == pytest.approx(2 / 3)
    assert or_ratio(counts, top=3) == pytest.approx(1.0)
    conc = concentration(items, 2, 4, popularity=np.array([4, 3, 2, 1]))
    assert (conc.filled_slots, conc.empty_slots, conc.distinct) == (3, 1, 2)


def test_div_and_or_ratio_equal_sprec_with_full_lists():
    items = np.array([[0, 1, 2], [0, 1, 3], [0, 4, 1], [0, 2, 5]])
    conc = concentration(items, 3, 8, popularity=np.ones(8))
    n_k = items.size
    assert conc.div_ratio == pytest.approx(len(set(items.ravel())) / n_k)
    top3 = sorted(np.bincount(items.ravel()), reverse=True)[:3]
    assert conc.or_ratio == pytest.approx(sum(top3) / n_k)


def test_tail_share_head_is_top_fifth():
    popularity = np.array([10, 5, 5, 1, 0])
    assert head_items(popularity).tolist() == [True, False, False, False, False]
    counts = np.array([1, 1, 0, 1, 1])
    assert tail_share(counts, popularity) == pytest.approx(0.75)


def test_tail_share_ties_join_the_head_and_unseen_items_never_do():
    assert head_items(np.array([10, 10, 1, 0, 0])).tolist() == [True, True, False, False, False]
    assert not head_items(np.zeros(5)).any()
    assert head_items(np.array([4, 3, 2, 1, 0]), head_fraction=0.4).tolist() == [
        True,
        True,
        False,
        False,
        False,
    ]


def test_k_above_list_length_names_k_and_length():
    with pytest.raises(RecbiasError, match=r"K=5 .*hold 3 items"):
        concentration(np.zeros((2, 3), dtype=int), 5, 4, np.ones(4))


def test_items_outside_catalog_name_the_file_and_field():
    with pytest.raises(DataError, match=r"preds\.jsonl: field 'items' holds item id 9"):
        concentration(np.array([[0, 9]]), 2, 4, np.ones(4), where="preds.jsonl")


def test_top_k_uses_only_first_k_columns():
    items = np.array([[0, 1, 2, 3]])
    assert concentration(items, 2, 4, np.ones(4)).distinct == 2
