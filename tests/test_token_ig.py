from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F

import tiny
from recbias.decoding.trie import ItemTrie
from recbias.diagnostics.token_ig import (
    TokenIGConfig,
    candidate_entropy,
    entropy_by_step,
    ig_token_groups,
    loss_by_group,
    target_token_losses,
    token_ig_section,
    token_ig_summary,
)
from recbias.errors import ConfigError, RecbiasError
from recbias.lm.batching import TokenizedSample, encode_samples
from recbias.objectives.information_gain import trie_information, walk_samples
from recbias.prompts import EncodedPrompt

# item 3 is never a training target (count 0): it must not change anything for the others
SEQS = [[1, 2, 9], [1, 3, 9], [4, 5, 9], [4, 6]]
COUNTS = np.array([1, 1, 2, 0])
TITLES = ["a", "b", "c", "d"]
LN2 = math.log(2)


@pytest.fixture
def trie():
    return ItemTrie.build(SEQS)


def _samples(items):
    return [
        TokenizedSample(n, i, EncodedPrompt([7], [], list(SEQS[i]))) for n, i in enumerate(items)
    ]


def test_zero_ig_share_on_hand_built_catalog(trie):
    info = trie_information(trie, COUNTS)
    summary = token_ig_summary(trie, info, _samples([0, 1, 2]), TITLES)
    # zero-IG: the final 9 of items 0 and 1, then 5 and 9 of item 2 -> 4 of 9 tokens
    assert summary.counts[0] == 4
    assert summary.shares[0] == pytest.approx(4 / 9)
    # positive IGs: 4 x ln2/2 (items 0, 1) and 1 x ln2 (token 4): median ln2/2, all high
    assert summary.threshold == pytest.approx(LN2 / 2)
    assert summary.counts.tolist() == [4, 0, 5]


def test_fixed_threshold_splits_low_and_high(trie):
    info = trie_information(trie, COUNTS)
    nodes, _ = walk_samples(trie, _samples([0, 1, 2]), TITLES)
    groups = ig_token_groups(info, nodes, threshold=0.5)
    assert groups.tolist() == [[1, 1, 0], [1, 1, 0], [2, 0, 0]]


def test_loss_by_group_hand_computed():
    losses = torch.tensor([[1.0, 2.0, float("nan")], [3.0, 4.0, 5.0]])
    groups = torch.tensor([[0, 1, -1], [0, 0, 2]])
    mean, count = loss_by_group(losses, groups, 4)
    np.testing.assert_allclose(mean[:3], [8 / 3, 2.0, 5.0])
    assert math.isnan(mean[3])
    assert count.tolist() == [3, 1, 1, 0]


def test_candidate_entropy_per_step_igd(trie):
    info = trie_information(trie, COUNTS)
    h = candidate_entropy(trie, info, COUNTS, np.array([0, 2, 3]))
    # S = Σ -p log p with p = [.25, .25, .5, 0]
    expected = [[LN2, LN2 / 2, LN2 / 2], [LN2 / 2, LN2 / 2, LN2 / 2], [LN2 / 2, 0.0, math.nan]]
    np.testing.assert_allclose(h.numpy(), expected)


def test_candidate_entropy_per_step_conditional(trie):
    info = trie_information(trie, COUNTS)
    h = candidate_entropy(trie, info, COUNTS, np.array([0, 2, 3]), kind="conditional")
    np.testing.assert_allclose(h.numpy(), [[LN2, 0, 0], [0, 0, 0], [0, 0, math.nan]], atol=1e-12)


def test_entropy_by_step_means_over_items_still_generating(trie):
    info = trie_information(trie, COUNTS)
    curves = entropy_by_step(trie, info, COUNTS, np.array([[0, 2], [3, -1]]), np.array([1, 2]))
    np.testing.assert_allclose(curves.predicted, [2 * LN2 / 3, LN2 / 3, LN2 / 2])
    assert curves.n_predicted.tolist() == [3, 3, 2]
    np.testing.assert_allclose(curves.target, [3 * LN2 / 4, LN2 / 2, LN2 / 2])


def test_items_outside_the_trie_are_an_error(trie):
    info = trie_information(trie, COUNTS)
    with pytest.raises(RecbiasError, match=r"items \[9\]"):
        candidate_entropy(trie, info, COUNTS, np.array([9]))


MOVIES = ["Toy Story", "Toy Story 2", "Heat", "Heat Wave", "Alien", "Casino"]


def _frame():
    hists = [[0], [1, 2], [3, 4, 5, 0], [2], [5, 1, 3]]
    return pd.DataFrame(
        {"sample_id": range(5), "user": list("abcde"), "history": hists, "target": [2, 3, 0, 5, 1]}
    )


def _plain_losses(model, sample):
    ids = torch.tensor([sample.prompt.full_ids])
    with torch.no_grad():
        logits = model(input_ids=ids).logits[0].float()
    p, t = len(sample.prompt.input_ids), len(sample.prompt.target_ids)
    return F.cross_entropy(
        logits[p - 1 : p + t - 1], torch.tensor(sample.prompt.target_ids), reduction="none"
    )


@pytest.mark.parametrize("which", ["byte", "meta"])
def test_target_token_losses_equal_plain_forward(which, byte_tok, meta_tok):
    tok = byte_tok if which == "byte" else meta_tok
    model = tiny.tiny_llama(len(tok))
    builder = tiny.movie_builder(tok)
    samples = encode_samples(builder, _frame(), MOVIES, max_length=512)
    losses = target_token_losses(model, samples, tok.pad_token_id, batch_size=2)
    for row, s in enumerate(samples):
        n = len(s.prompt.target_ids)
        torch.testing.assert_close(losses[row, :n], _plain_losses(model, s), atol=1e-4, rtol=1e-4)
        assert torch.isnan(losses[row, n:]).all()


def test_config_validation_names_the_key():
    TokenIGConfig().validate()
    with pytest.raises(ConfigError, match=r"'token_ig\.low_quantile'"):
        TokenIGConfig(low_quantile=1.5).validate("token_ig")


def test_section_with_losses_and_curves(trie, tmp_path):
    info = trie_information(trie, COUNTS)
    samples = _samples([0, 1, 2])
    losses = torch.rand(3, 3)
    summary = token_ig_summary(trie, info, samples, TITLES, losses=losses)
    curves = entropy_by_step(trie, info, COUNTS, np.array([[0, 2]]), np.array([1]))
    sec = token_ig_section(summary, curves, tmp_path, model="sft")
    assert [r[0] for r in sec.tables[0].rows] == ["zero", "low", "high"]
    assert len(sec.figures) == 2 and all((tmp_path / f.file).is_file() for f in sec.figures)
    assert "44.4%" in sec.summary
