"""Simulator metrics and telemetry on hand-computed cases."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from recbias.metrics.overlap import jaccard
from recbias.simulate import metrics as M
from recbias.simulate.config import TelemetryConfig
from recbias.simulate.recommend import occurrence_rank
from recbias.simulate.telemetry import collapse_telemetry, ols_slope


def test_hhi_hand_computed():
    assert M.hhi(np.array([1, 1, 2])) == pytest.approx(0.25 / 4 + 0.25 / 4 + 0.25)


def test_hhi_uniform_and_single_item():
    assert M.hhi(np.ones(8)) == pytest.approx(1 / 8)
    assert M.hhi(np.array([0, 5, 0])) == pytest.approx(1.0)


def test_gini_hand_computed():
    # sorted (0, 0, 1, 3): Σ (2i − n − 1) c_i = 1·1 + 3·3 = 10; / (4 · 4) = 0.625
    assert M.gini(np.array([3, 0, 1, 0])) == pytest.approx(0.625)


def test_gini_equal_is_zero_and_one_item_is_max():
    assert M.gini(np.full(5, 7)) == pytest.approx(0.0)
    assert M.gini(np.array([0, 0, 0, 9])) == pytest.approx(3 / 4)


def test_gini_matches_mean_absolute_difference_formula():
    c = np.random.default_rng(0).integers(0, 50, 40).astype(float)
    mad = np.abs(c[:, None] - c[None, :]).sum() / (2 * len(c) ** 2 * c.mean())
    assert M.gini(c) == pytest.approx(mad)


def test_coverage_and_tail_share():
    counts = np.array([5, 0, 3, 0, 2])
    assert M.coverage(counts) == pytest.approx(3 / 5)
    head = M.head_items(np.array([9, 1, 1, 1, 1]), head_fraction=0.2)
    assert head.tolist() == [True, False, False, False, False]
    assert M.tail_share(counts, head) == pytest.approx(5 / 10)


def test_entropy_uniform():
    assert M.entropy(np.ones(4)) == pytest.approx(np.log(4))


def test_jaccard_hand_computed():
    lists = torch.tensor([[1, 2, 3], [2, 3, 4], [7, 8, 9], [1, 2, 3]])
    pairs = torch.tensor([[0, 1], [0, 2], [0, 3]])
    got = M.jaccard_pairs(lists, pairs).tolist()
    assert got == pytest.approx([2 / 4, 0.0, 1.0])


def test_jaccard_counts_duplicates_once():
    lists = torch.tensor([[1, 1, 2], [1, 3, 3]])
    # sets {1, 2} and {1, 3}: 1 / 3
    assert M.jaccard_pairs(lists, torch.tensor([[0, 1]])).item() == pytest.approx(1 / 3)


def test_jaccard_pairs_matches_the_numpy_jaccard_of_metrics():
    gen = torch.Generator().manual_seed(0)
    lists = torch.randint(0, 12, (30, 5), generator=gen)
    pairs = M.sample_pairs(30, 100, gen)
    want = jaccard(lists[pairs[:, 0]].numpy(), lists[pairs[:, 1]].numpy())
    assert M.jaccard_pairs(lists, pairs).tolist() == pytest.approx(want.tolist())


def test_sample_pairs_distinct_members():
    pairs = M.sample_pairs(3, 500, torch.Generator().manual_seed(1))
    assert (pairs[:, 0] != pairs[:, 1]).all() and pairs.max() < 3


def test_group_profile_and_tv_distance():
    prof = M.group_profile(
        np.array([0, 0, 0, 1]), np.array([0, 1, 2, 2]), np.array([0, 0, 1]), 3, 2
    )
    np.testing.assert_allclose(prof, [[2 / 3, 1 / 3], [0.0, 1.0], [0.5, 0.5]], rtol=1e-6)
    assert M.tv_distance(prof[:2], prof[1:]).tolist() == pytest.approx([2 / 3, 0.5])


def test_persistence_identical_and_opposite():
    assert M.persistence(np.array([1, 2, 3]), np.array([2, 4, 6])) == pytest.approx(1.0)
    assert M.persistence(np.array([1, 2, 3]), np.array([3, 2, 1])) == pytest.approx(-1.0)


def test_occurrence_rank():
    assert occurrence_rank(torch.tensor([5, 3, 5, 5, 3])).tolist() == [0, 0, 1, 2, 1]


def test_ols_slope():
    assert ols_slope(np.array([1.0, 3.0, 5.0])) == pytest.approx(2.0)
    assert ols_slope(np.array([4.0])) == 0.0


def _rows(hhi, pers, ent):
    return [
        {"round": r, "exposure_hhi": h, "exposure_persistence": p, "consumption_entropy": e}
        for r, (h, p, e) in enumerate(zip(hhi, pers, ent, strict=True))
    ]


def test_telemetry_alerts_on_collapse_pattern_only():
    cfg = TelemetryConfig(window=3, gain_threshold=0.05, persistence_threshold=0.9)
    rising = _rows([0.1, 0.1, 0.2, 0.4, 0.8], [1, 0.95, 0.95, 0.95, 0.95], [3, 3, 2.5, 2, 1.5])
    tel = collapse_telemetry(rising, cfg)
    # the window (3 rounds after round 0) is first full at round 3; rounds 3 and 4 alert
    assert tel["first_alert_round"] == 3 and tel["alert_rounds"] == 2
    flat = _rows([0.1] * 5, [0.95] * 5, [3.0] * 5)
    assert collapse_telemetry(flat, cfg)["first_alert_round"] is None
    churning = _rows([0.1, 0.1, 0.2, 0.4, 0.8], [1, 0.2, 0.2, 0.2, 0.2], [3, 3, 2.5, 2, 1.5])
    assert collapse_telemetry(churning, cfg)["alert_rounds"] == 0
