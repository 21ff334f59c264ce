"""The comparison's bias table: concentration and MGU/DGU per method, with paired intervals."""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import tiny
from recbias.compare import CompareConfig
from recbias.compare.bias import (
    NAMES,
    BiasData,
    BiasTableConfig,
    bias_k,
    bias_markdown,
    build_bias_table,
    list_bias,
    permutation_p,
    seed_values,
    swap_masks,
)
from recbias.compare.table import MethodRuns, seed_interval
from recbias.config import from_dict
from recbias.diagnostics.groups import popularity_grouping
from recbias.errors import ConfigError
from recbias.evaluation.predictions import write_predictions_jsonl
from recbias.recs import Recommendations

TITLES = tiny.MOVIES_16


def _data(weights: np.ndarray, head: np.ndarray, history_mass: np.ndarray, k: int) -> BiasData:
    return BiasData(np.arange(len(history_mass)), history_mass, weights, head, k)


def test_list_bias_on_a_hand_computed_case():
    # items 0,1 in group 0 and 2,3 in group 1; item 0 alone is the head
    weights = np.array([[1, 0], [1, 0], [0, 1], [0, 1]], dtype=float)
    data = _data(weights, np.array([True, False, False, False]), np.ones((2, 2)), k=2)
    lists = np.array([[0, 1], [0, 2]])  # exposure 2, 1, 1, 0
    values = dict(zip(NAMES, list_bias(lists, np.array([1.0, 1.0]), data), strict=True))
    # Gini: x = (0, 1, 1, 2), Σ (2i − n − 1) x_(i) = −1 + 1 + 6 = 6, / (n Σx = 16)
    assert values["Gini"] == pytest.approx(6 / 16)
    assert values["Coverage"] == pytest.approx(3 / 4)
    assert values["Tail"] == pytest.approx(2 / 4)  # slots of items 1 and 2
    # list shares (3/4, 1/4) vs history (1/2, 1/2): gaps ±1/4
    assert values["MGU"] == pytest.approx(0.25) and values["DGU"] == pytest.approx(0.5)


def test_empty_slots_are_not_exposure():
    weights = np.eye(3)
    data = _data(weights, np.array([True, False, False]), np.ones((1, 3)), k=3)
    full = list_bias(np.array([[0, 1, -1]]), np.ones(3), data)
    assert full[1] == pytest.approx(2 / 3)  # coverage counts items 0 and 1 only
    assert np.isnan(list_bias(np.full((1, 3), -1), np.ones(3), data)).all()


def _write(run_dir: Path, lists: np.ndarray, ids: np.ndarray) -> None:
    samples = pd.DataFrame({"sample_id": ids, "user": "u", "target": lists[:, 0]})
    recs = Recommendations(lists, np.zeros(lists.shape), ids)
    write_predictions_jsonl(run_dir / "predictions" / "llm.jsonl", samples, recs, TITLES)


@pytest.fixture
def toy(tmp_path):
    """Three rows over 16 items and 40 samples: a random one, a copy of it, one stuck on item 0."""
    rng = np.random.default_rng(3)
    n, k = 40, 4
    ids = np.arange(100, 100 + n)
    lists = [np.stack([rng.choice(16, k, replace=False) for _ in range(n)]) for _ in range(2)]
    stuck = np.tile(np.array([0, 1, 2, 3]), (n, 1))
    rows = []
    for name, seeds in [("ref", lists), ("copy", lists), ("stuck", [stuck, stuck])]:
        dirs = []
        for s, li in enumerate(seeds):
            d = tmp_path / f"seed-{s}" / name
            order = np.arange(n) if s == 0 else np.arange(n)[::-1]  # seed 1's file is reversed
            _write(d, li[order], ids[order])
            dirs.append(d)
        rows.append(MethodRuns(name, dirs))
    popularity = np.arange(16)[::-1].copy()
    weights = popularity_grouping(popularity, 4).weights
    mass = rng.integers(0, 3, size=(n, 4)).astype(float) + 1
    return rows, BiasData(ids, mass, weights, np.arange(16) < 4, k), lists


def test_a_copy_of_the_reference_has_zero_delta_and_p_one(toy):
    rows, data, _ = toy
    table = build_bias_table(rows, "ref", data, n_perm=200)
    for name in NAMES:
        d = table["rows"]["copy"]["delta"][name]
        assert d["delta"] == 0.0 and d["lo"] == 0.0 and d["hi"] == 0.0
        assert d["p_value"] == 1.0 and not d["significant"]
    assert table["rows"]["ref"]["delta"] is None and table["rows"]["copy"]["vs"] == "ref"


def test_lists_stuck_on_the_head_are_more_concentrated_and_significant(toy):
    rows, data, lists = toy
    d = build_bias_table(rows, "ref", data, n_perm=200)["rows"]["stuck"]["delta"]
    assert d["Gini"]["delta"] > 0 and d["Gini"]["significant"]
    assert d["Coverage"]["delta"] < 0 and d["Coverage"]["significant"]
    assert d["Gini"]["p_value"] == pytest.approx(1 / 201)  # no swap is as extreme
    ref_tail = [list_bias(li, data.history_mass.sum(0), data)[2] for li in lists]
    assert d["Tail"]["delta"] == pytest.approx(-np.mean(ref_tail))  # stuck lists: head only


def test_randomisation_p_matches_full_enumeration_of_the_swaps():
    """n = 4 samples: the exact p over all 2^4 swap patterns vs the Monte Carlo p."""
    weights = np.eye(4)
    data = BiasData(np.arange(4), np.ones((4, 4)), weights, np.array([1, 0, 0, 0], bool), 2)
    a = [np.array([[0, 1], [0, 2], [0, 1], [3, 1]])]
    b = [np.array([[0, 1], [2, 3], [1, 2], [3, 2]])]
    observed = seed_values(a, data)[0] - seed_values(b, data)[0]
    hits = np.zeros(len(NAMES))
    for bits in itertools.product([False, True], repeat=4):
        m = np.array(bits)[:, None]
        sa, sb = np.where(m, b[0], a[0]), np.where(m, a[0], b[0])
        delta = seed_values([sa], data)[0] - seed_values([sb], data)[0]
        hits += np.abs(delta) >= np.abs(observed) - 1e-12
    exact = hits / 16
    approx = permutation_p(a, b, data, swap_masks(4, 20_000))
    np.testing.assert_allclose(approx, exact, atol=0.015)
    assert exact.min() < 1.0  # a case where some swaps are less extreme


def test_cells_over_seeds_are_the_mean_and_t_interval_of_per_seed_values(toy):
    rows, data, lists = toy
    cells = build_bias_table(rows, "ref", data, n_perm=20)["rows"]["ref"]["cells"]
    per_seed = np.stack([list_bias(li, data.history_mass.sum(0), data) for li in lists])
    for j, name in enumerate(NAMES):
        assert cells[name]["per_seed"] == pytest.approx(per_seed[:, j].tolist())
        mean, std, lo, hi = seed_interval(per_seed[:, j])
        c = cells[name]
        assert (c["mean"], c["std"], c["lo"], c["hi"]) == pytest.approx((mean, std, lo, hi))


def test_one_seed_gives_values_without_intervals(toy):
    rows, data, _ = toy
    one = [MethodRuns(r.name, r.run_dirs[:1]) for r in rows]
    table = build_bias_table(one, "ref", data, n_perm=20)
    assert table["n_seeds"] == 1
    cell = table["rows"]["ref"]["cells"]["Gini"]
    assert cell["lo"] is None and cell["hi"] is None and cell["std"] is None
    d = table["rows"]["stuck"]["delta"]["Gini"]
    assert d["lo"] is None and d["p_value"] < 0.05
    assert "one seed (no interval)" in bias_markdown(table)


def test_bias_k_above_the_beam_is_a_config_error():
    with pytest.raises(ConfigError, match=r"bias\.k.*num_beams = 5"):
        from_dict(
            CompareConfig,
            {"methods": [{"name": "sft"}], "bias": {"k": 10},
             "base": {"decode": {"beam": {"num_beams": 5}}}},
        )  # fmt: skip


def test_default_bias_settings_and_k_capped_at_the_beam():
    cfg = BiasTableConfig()
    assert (cfg.enabled, cfg.n_groups, cfg.head_fraction) == (True, 5, 0.2)
    assert bias_k(cfg, {"sft": 10, "popularity": 20}) == 10
    assert bias_k(cfg, {"sft": 5, "popularity": 20}) == 5
    assert bias_k(BiasTableConfig(k=3), {"sft": 5}) == 3
    with pytest.raises(ConfigError, match=r"bias\.k': 8 is above the lists of 'gdrt' \(5 items\)"):
        bias_k(BiasTableConfig(k=8), {"sft": 10, "gdrt": 5})


def test_a_difference_the_seeds_disagree_on_is_not_starred():
    from recbias.compare.bias import _deltas

    a = np.array([[0.5] * 5, [0.1] * 5, [0.3] * 5])  # seeds above, below, level with b
    b = np.full((3, 5), 0.3)
    small_p = np.full(5, 0.001)
    d = _deltas(a, b, small_p)["Gini"]
    assert d["delta"] == pytest.approx(0.0) and d["lo"] < 0 < d["hi"] and not d["significant"]
    agree = _deltas(np.array([[0.5] * 5, [0.52] * 5, [0.48] * 5]), b, small_p)["Gini"]
    assert agree["lo"] > 0 and agree["significant"]
    assert not _deltas(a + 0.5, b, np.full(5, 0.2))["Gini"]["significant"]  # p too large
