"""Sensitivity to history perturbations and instruction rewording."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

import tiny
from recbias.decoding import BeamConfig
from recbias.diagnostics.sensitivity import (
    SensitivityConfig,
    history_sensitivity,
    llm_factory,
    replace_item,
    sensitivity_section,
    shuffle_history,
    swap_history,
    truncate_history,
    with_instruction,
    wording_sensitivity,
)
from recbias.errors import ConfigError, DataError
from recbias.llmrec import LLMRecommender, build_trie
from recbias.recs import Recommendations

TITLES = tiny.DISTINCT_MOVIES
SAMPLES = pd.DataFrame(
    {
        "sample_id": [5, 6, 7, 8, 9],
        "user": ["a", "a", "b", "c", "c"],
        "history": [[0, 1, 2], [0, 1, 2, 3], [4, 5], [6], [1, 7, 2, 3, 4]],
        "target": [3, 4, 6, 0, 5],
    }
)


class Constant:
    name = "constant"

    def recommend(self, samples: pd.DataFrame, k: int) -> Recommendations:
        return Recommendations.from_lists(samples.sample_id, [[1, 2, 3]] * len(samples), None, k)


class LastItems:
    """Recommends the history, newest first: maximally sensitive to it."""

    name = "last_items"

    def recommend(self, samples: pd.DataFrame, k: int) -> Recommendations:
        lists = [list(reversed(h))[:k] for h in samples.history]
        return Recommendations.from_lists(samples.sample_id, lists, None, k)


class Scored(LastItems):
    """Exact scores: item i scores +1 if in the history, plus a small id-based tie breaker."""

    def scores(self, samples: pd.DataFrame) -> np.ndarray:
        out = np.tile(-np.arange(len(TITLES)) * 0.01, (len(samples), 1))
        for row, h in enumerate(samples.history):
            out[row, list(h)] += 1.0
        return out


def test_swap_takes_another_users_history_and_is_seeded():
    out = swap_history(SAMPLES, seed=1)
    hist_user = {tuple(h): u for h, u in zip(SAMPLES.history, SAMPLES.user, strict=True)}
    for u, h in zip(out.user, out.history, strict=True):
        assert hist_user[tuple(h)] != u
    assert out.history.tolist() == swap_history(SAMPLES, seed=1).history.tolist()
    assert SAMPLES.history[0] == [0, 1, 2]  # the input is not modified
    with pytest.raises(DataError, match="two users"):
        swap_history(SAMPLES.assign(user="a"), seed=0)


def test_shuffle_truncate_replace():
    shuffled = shuffle_history(SAMPLES, seed=0)
    for a, b in zip(SAMPLES.history, shuffled.history, strict=True):
        assert sorted(a) == sorted(b)
    assert truncate_history(SAMPLES, 2).history.tolist() == [
        [1, 2], [2, 3], [4, 5], [6], [3, 4]
    ]  # fmt: skip
    replaced = replace_item(SAMPLES, len(TITLES), seed=3)
    for a, b in zip(SAMPLES.history, replaced.history, strict=True):
        diff = [i for i, (x, y) in enumerate(zip(a, b, strict=True)) if x != y]
        assert len(diff) == 1 and 0 <= b[diff[0]] < len(TITLES)


def test_constant_recommender_is_insensitive():
    results = history_sensitivity(Constant(), SAMPLES, len(TITLES), SensitivityConfig(k=3))
    assert [r.name for r in results] == ["swap", "shuffle", "truncate", "replace"]
    for r in results:
        assert (r.jaccard == 1.0).all() and (r.rank_change == 0).all() and not r.exact_ranks


def test_history_dependent_recommender_is_sensitive():
    cfg = SensitivityConfig(k=5, perturbations=["swap", "truncate"], truncate_keep=1)
    swap, trunc = history_sensitivity(LastItems(), SAMPLES, len(TITLES), cfg)
    assert swap.jaccard.mean() < 1.0
    # truncate to 1 keeps 1 of |h| items: Jaccard = 1/min(|h|, 5)
    np.testing.assert_allclose(trunc.jaccard, [1 / 3, 1 / 4, 1 / 2, 1.0, 1 / 5])
    # ... and the two lists share exactly that one item
    np.testing.assert_array_equal(trunc.shared, [1, 1, 1, 1, 1])
    summary = trunc.summary(n_boot=20)
    assert (summary["shared_items"], summary["shared_share"]) == (1.0, 1 / 5)


def test_shared_items_of_a_swap_hand_computed():
    cfg = SensitivityConfig(k=5, perturbations=["swap"], seed=3)
    (swap,) = history_sensitivity(LastItems(), SAMPLES, len(TITLES), cfg)
    swapped = swap_history(SAMPLES, 3)
    pairs = zip(SAMPLES.history, swapped.history, strict=True)
    expected = [len(set(a[-5:]) & set(b[-5:])) for a, b in pairs]
    np.testing.assert_array_equal(swap.shared, expected)


def test_list_ranks_censored_at_k_and_exact_ranks():
    cfg = SensitivityConfig(k=5, perturbations=["truncate"], truncate_keep=1)
    (r,) = history_sensitivity(LastItems(), SAMPLES, len(TITLES), cfg)
    # sample 5: target 3 not in [2, 1, 0] → 5 (censored); sample 6: target 4 absent; sample 9:
    # target 5 absent both times. Sample 8 history [6], target 0 → absent.
    assert r.rank_original.tolist() == [5, 5, 5, 5, 5]
    (e,) = history_sensitivity(Scored(), SAMPLES, len(TITLES), cfg)
    assert e.exact_ranks
    # sample 5: history {0,1,2} scores ≥ 0.98 beat target 3 (-0.03): rank 3; after truncation to
    # [2], only item 2 and items 0,1 (ids below 3) beat it: rank 3 as well.
    assert e.rank_original[0] == 3 and e.rank_perturbed[0] == 3
    # sample 7: target 6, history {4,5} → 2 history items + ids 0..5 not in history (4) → 6
    assert e.rank_original[2] == 6


def _tiny_llm(tok, ignore: bool) -> LLMRecommender:
    model = tiny.tiny_llama(len(tok), seed=2)
    if ignore:
        with torch.no_grad():
            for layer in model.model.layers:
                layer.self_attn.o_proj.weight.zero_()
    builder = tiny.movie_builder(tok)
    trie = build_trie(builder, TITLES, list(range(len(TITLES))))
    beam = BeamConfig(num_beams=4, batch_size=3)
    return LLMRecommender(model, builder, TITLES, trie, beam, "fp32")


def test_tiny_lm_that_ignores_the_prompt_has_jaccard_one(byte_tok):
    rec = _tiny_llm(byte_tok, ignore=True)
    cfg = SensitivityConfig(k=4)
    results = history_sensitivity(rec, SAMPLES, len(TITLES), cfg)
    results += wording_sensitivity(llm_factory(rec), SAMPLES, cfg)
    assert len(results) == 4 + 3
    for r in results:
        assert (r.jaccard == 1.0).all(), r.name


def test_tiny_lm_that_reads_the_prompt_changes_some_lists(byte_tok):
    rec = _tiny_llm(byte_tok, ignore=False)
    (swap,) = history_sensitivity(
        rec, SAMPLES, len(TITLES), SensitivityConfig(k=4, perturbations=["swap"])
    )
    assert swap.jaccard.min() < 1.0


def test_with_instruction_rewrites_only_the_instruction(any_tok):
    builder = tiny.movie_builder(any_tok)
    new = with_instruction(builder, "Pick one more {item} for someone who {verb} these {items}.")
    assert "Pick one more movie for someone who watched these movies." in new.head
    assert "please recommend" not in new.head and "please recommend" in builder.head
    assert new.render(["Heat"]).endswith(builder.render(["Heat"]).split("### Input:")[1])
    with pytest.raises(ConfigError, match="prompt.instruction"):
        with_instruction(builder, "a {genre}")


def test_user_paraphrases_are_appended():
    cfg = SensitivityConfig(instructions=["Suggest a {item}."])
    assert len(cfg.paraphrases()) == 4 and cfg.paraphrases()[-1] == "Suggest a {item}."
    assert SensitivityConfig(builtin_instructions=False).paraphrases() == []


@pytest.mark.parametrize(
    "kwargs, key",
    [
        ({"k": 0}, "k"),
        ({"truncate_keep": 0}, "truncate_keep"),
        ({"perturbations": ["swap", "swap"]}, "perturbations"),
        ({"instructions": [" "]}, r"instructions\[0\]"),
    ],
)
def test_bad_config_names_the_key(kwargs, key):
    with pytest.raises(ConfigError, match=f"'sensitivity.{key}'"):
        SensitivityConfig(**kwargs).validate("sensitivity")


def test_section(tmp_path):
    results = {
        "constant": history_sensitivity(Constant(), SAMPLES, len(TITLES), SensitivityConfig(k=3)),
        "last": history_sensitivity(LastItems(), SAMPLES, len(TITLES), SensitivityConfig(k=3)),
    }
    sec = sensitivity_section(results, tmp_path, n_boot=50)
    assert len(sec.tables[0].rows) == 8
    assert sec.tables[0].rows[0][3] == 1.0
    columns = sec.tables[0].columns
    assert sec.tables[0].rows[0][columns.index("mean shared items")] == 3.0  # constant lists
    assert sec.tables[0].rows[0][columns.index("shared / K")] == 1.0
    assert (tmp_path / sec.figures[0].file).read_bytes()[:4] == b"\x89PNG"
