from __future__ import annotations

import numpy as np
import pytest

from recbias.errors import ConfigError, DataError, RecbiasError
from recbias.metrics.fairness import (
    FairnessConfig,
    ItemGrouping,
    group_gap,
    mgu_dgu,
    top1_group_shares,
)

# items 0, 1 -> group A; items 2, 3 -> group B
AB = ItemGrouping.from_labels("ab", np.array([0, 0, 1, 1]), ["A", "B"])
RECS = np.array([[0, 1], [0, 2]])
HISTORIES = [[2, 3], [0, 3, 3, 3]]


def test_mgu_dgu_of_gaps():
    assert mgu_dgu(np.array([0.3, -0.1, -0.2])) == (pytest.approx(0.2), pytest.approx(0.5))


def test_pooled_hand_computed():
    gap = group_gap(RECS, HISTORIES, AB, k=2, mode="pooled")
    np.testing.assert_allclose(gap.rec_share, [0.75, 0.25])
    np.testing.assert_allclose(gap.history_share, [1 / 6, 5 / 6])
    assert gap.mgu == pytest.approx(7 / 12)
    assert gap.dgu == pytest.approx(14 / 12)


def test_per_user_hand_computed():
    gap = group_gap(RECS, HISTORIES, AB, k=2, mode="per_user")
    # user 0: d = [1, -1] -> MGU 1, DGU 2; user 1: d = [.25, -.25] -> MGU .25, DGU .5
    assert gap.mgu == pytest.approx(0.625)
    assert gap.dgu == pytest.approx(1.25)
    assert (gap.n_used, gap.n_skipped) == (2, 0)


def test_per_user_skips_samples_without_grouped_items():
    recs = np.array([[0, 1], [-1, -1]])
    gap = group_gap(recs, HISTORIES, AB, k=2, mode="per_user")
    assert (gap.n_used, gap.n_skipped, gap.empty_slots) == (1, 1, 2)
    assert gap.mgu == pytest.approx(1.0)


def test_empty_and_ungrouped_slots_are_ignored_and_counted():
    grouping = ItemGrouping.from_labels("ab", np.array([0, 0, 1, -1]), ["A", "B"])
    gap = group_gap(np.array([[0, 3, -1]]), [[2]], grouping, k=3)
    np.testing.assert_allclose(gap.rec_share, [1.0, 0.0])
    assert (gap.ungrouped_slots, gap.empty_slots) == (1, 1)


def _sprec_reference(recs, histories, genres, k):
    """SPRec eval/evaluate.py logic (peer reference §6.2) with plain dicts and loops."""
    rec_c, hist_c = {}, {}
    for row in recs:
        for item in row[:k]:
            for g in genres[item]:
                rec_c[g] = rec_c.get(g, 0) + 1 / len(genres[item])
    for hist in histories:
        for item in hist:
            for g in genres[item]:
                hist_c[g] = hist_c.get(g, 0) + 1 / len(genres[item])
    names = sorted(set(rec_c) | set(hist_c))
    p = {g: rec_c.get(g, 0) / sum(rec_c.values()) for g in names}
    h = {g: hist_c.get(g, 0) / sum(hist_c.values()) for g in names}
    d = [p[g] - h[g] for g in names]
    return sum(abs(x) for x in d) / len(d), max(d) - min(d)


def test_pooled_equals_sprec_reference_with_multi_genre_items():
    rng = np.random.default_rng(3)
    labels = ["a", "b", "c", "d"]
    genres = [sorted(set(rng.choice(labels, size=rng.integers(1, 4)))) for _ in range(30)]
    grouping = ItemGrouping(
        "genre",
        labels,
        np.array([[1 / len(gs) if lab in gs else 0 for lab in labels] for gs in genres]),
    )
    recs = rng.integers(0, 30, size=(20, 5))
    histories = [rng.integers(0, 30, size=rng.integers(1, 8)).tolist() for _ in range(20)]
    gap = group_gap(recs, histories, grouping, k=3)
    mgu, dgu = _sprec_reference(recs, histories, genres, 3)
    assert gap.mgu == pytest.approx(mgu)
    assert gap.dgu == pytest.approx(dgu)


def test_top1_shares_against_targets():
    t = top1_group_shares(np.array([[0, 3], [2, 0], [-1, 1]]), np.array([0, 1, 3]), AB)
    np.testing.assert_allclose(t.rec_share, [0.5, 0.5])
    np.testing.assert_allclose(t.target_share, [2 / 3, 1 / 3])
    assert (t.n_lists, t.empty) == (3, 1)


def test_k_above_list_length_is_an_error():
    with pytest.raises(RecbiasError, match=r"K=3 .*hold 2 items"):
        group_gap(RECS, HISTORIES, AB, k=3)


def test_foreign_item_ids_name_the_source():
    with pytest.raises(DataError, match=r"other\.jsonl: field 'items' holds item id 7"):
        group_gap(np.array([[0, 7]]), [[0]], AB, k=2, where="other.jsonl")
    with pytest.raises(DataError, match=r"field 'history' holds item id 5"):
        group_gap(np.array([[0, 1]]), [[5]], AB, k=2)
    with pytest.raises(DataError, match=r"field 'target'"):
        top1_group_shares(np.array([[0]]), np.array([4]), AB)


def test_unknown_mode_is_an_error():
    with pytest.raises(RecbiasError, match="mode"):
        group_gap(RECS, HISTORIES, AB, k=2, mode="global")


def test_grouping_rows_must_sum_to_one_or_zero():
    with pytest.raises(RecbiasError, match="sum to 1"):
        ItemGrouping("bad", ["A", "B"], np.array([[0.5, 0.2]]))


def test_config_validation_names_the_key():
    FairnessConfig().validate()
    with pytest.raises(ConfigError, match=r"'fairness\.ks\[0\]'"):
        FairnessConfig(ks=[0, 5]).validate("fairness")
    with pytest.raises(ConfigError, match=r"'fairness\.head_fraction'"):
        FairnessConfig(head_fraction=1.0).validate("fairness")
