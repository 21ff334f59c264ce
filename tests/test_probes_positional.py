"""Positional channel (Prop. 4.1) on the isolated head: near-window mass vs m, in items."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from recbias.config import load_config
from recbias.errors import ConfigError
from recbias.probes import heads
from recbias.probes.config import PositionalProbeConfig, PositionalSection
from recbias.probes.positional import gini, is_non_decreasing, isolated_curve, list_diversity

GRID = [0.0, 0.01, 0.05, 0.1, 0.3, 0.7, 1.5, 4.0]


def test_item_mass_sums_tokens_of_each_item():
    w = np.array([0.1, 0.2, 0.3, 0.05, 0.15, 0.2])
    np.testing.assert_allclose(heads.item_mass(w, 2), [0.3, 0.35, 0.35])
    np.testing.assert_allclose(heads.item_mass(w, 3), [0.6, 0.4])


def test_near_mass_counts_items_not_tokens():
    bias = heads.alibi_bias(history_len=4, tokens_per_item=3)  # 12 tokens
    w = heads.attention(np.zeros(12), 0.3, bias)
    items = heads.item_mass(w, 3)
    assert heads.near_mass(items, 1) == pytest.approx(w[-3:].sum())
    assert heads.near_mass(items, 1) > w[-1:].sum()  # one item = three tokens


def test_equal_content_without_position_spreads_evenly():
    bias = heads.alibi_bias(history_len=10, tokens_per_item=2)
    items = heads.item_mass(heads.attention(np.zeros(20), 0.0, bias), 2)
    assert heads.near_mass(items, 3) == pytest.approx(0.3)


def test_near_mass_non_decreasing_in_m_for_every_content_draw():
    rng = np.random.default_rng(0)
    bias = heads.alibi_bias(history_len=8, tokens_per_item=3)
    content = heads.sampled_content(rng, 64, 24, head_dim=8) * 3.0  # strong content logits
    masses = np.stack(
        [heads.near_mass(heads.item_mass(heads.attention(content, m, bias), 3), 2) for m in GRID]
    )  # [grid, draws]
    assert np.all(np.diff(masses, axis=0) >= -1e-12)
    assert masses[-1].min() > 0.99  # strong position: nearly all mass on the last 2 items


def test_derivative_matches_finite_difference_and_is_non_negative():
    rng = np.random.default_rng(1)
    bias = heads.alibi_bias(history_len=6, tokens_per_item=2)
    content = heads.sampled_content(rng, 16, 12, head_dim=4)
    for m in (0.0, 0.2, 1.0):
        grad = heads.near_mass_derivative(content, m, bias, tokens_per_item=2, window=2)
        eps = 1e-6

        def mass(mm: float) -> np.ndarray:
            return heads.near_mass(heads.item_mass(heads.attention(content, mm, bias), 2), 2)

        np.testing.assert_allclose(grad, (mass(m + eps) - mass(m - eps)) / (2 * eps), atol=1e-6)
        assert grad.min() >= 0


def test_isolated_curve_is_seeded_and_monotone():
    cfg = PositionalSection(m_grid=GRID, window=2, history_len=10, tokens_per_item=3, key_draws=32)
    a = isolated_curve(cfg, np.random.default_rng(3))
    b = isolated_curve(cfg, np.random.default_rng(3))
    assert a == b
    assert is_non_decreasing(a["near_mass_analytic"]) and is_non_decreasing(a["near_mass_sampled"])
    assert a["near_mass_analytic"][0] == pytest.approx(0.2)


def test_gini_and_coverage_hand_cases():
    assert gini(np.array([3, 3, 3, 3])) == pytest.approx(0.0)
    assert gini(np.array([0, 0, 0, 8])) == pytest.approx(0.75)
    div = list_diversity(np.array([[0, 1], [1, -1]]), n_items=4)
    assert div["coverage"] == pytest.approx(0.5)
    assert div["gini"] == pytest.approx(gini(np.array([1, 2, 0, 0])))


@pytest.mark.parametrize(
    ("override", "key"),
    [
        ("positional.m_grid=[]", "positional.m_grid"),
        ("positional.m_grid=[0.1, -1.0]", "positional.m_grid"),
        ("positional.window=20", "positional.window"),
        ("positional.tokens_per_item=0", "positional.tokens_per_item"),
        ('model.kind="sasrec"', "model.kind"),
        ("positional.windw=2", "positional.windw"),
    ],
)
def test_bad_config_names_the_key(override, key):
    path = Path(__file__).parents[1] / "configs" / "probe_positional.toml"
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        load_config(PositionalProbeConfig, path, [override])
