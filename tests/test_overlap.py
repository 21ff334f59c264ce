"""Jaccard overlap of top-K lists on hand-computed cases."""

from __future__ import annotations

import numpy as np

from recbias.metrics.overlap import jaccard, shared_items


def test_jaccard_hand_computed():
    a = np.array([[1, 2, 3], [1, -1, -1], [-1, -1, -1], [4, 5, -1]])
    b = np.array([[3, 2, 9], [1, -1, -1], [-1, -1, -1], [6, 7, 8]])
    np.testing.assert_allclose(jaccard(a, b), [0.5, 1.0, 1.0, 0.0])


def test_jaccard_counts_duplicates_once_and_ignores_order():
    a = np.array([[1, 1, 2]])
    b = np.array([[3, 1, 3]])  # sets {1, 2} and {1, 3}
    np.testing.assert_allclose(jaccard(a, b), [1 / 3])
    np.testing.assert_allclose(jaccard(b, a), [1 / 3])


def test_jaccard_empty_list_against_a_full_one_is_zero():
    np.testing.assert_allclose(jaccard(np.array([[-1, -1]]), np.array([[0, 1]])), [0.0])


def test_shared_items_hand_computed():
    a = np.array([[1, 2, 3], [1, -1, -1], [-1, -1, -1], [4, 5, -1], [1, 1, 2]])
    b = np.array([[3, 2, 9], [1, -1, -1], [-1, -1, -1], [6, 7, 8], [3, 1, 1]])
    np.testing.assert_array_equal(shared_items(a, b), [2, 1, 0, 0, 1])


def test_jaccard_of_a_third_between_ten_item_lists_is_five_shared_items():
    a = np.arange(10)[None, :]
    b = np.arange(5, 15)[None, :]  # items 5..9 shared: |A ∩ B| = 5, |A ∪ B| = 15
    np.testing.assert_allclose(jaccard(a, b), [1 / 3])
    np.testing.assert_array_equal(shared_items(a, b), [5])
