"""Jaccard overlap of top-K lists on hand-computed cases."""

from __future__ import annotations

import numpy as np

from recbias.metrics.overlap import jaccard


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
