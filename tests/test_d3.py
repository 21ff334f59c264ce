from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import tiny
from recbias.decoding import BeamConfig, EdgeScores, ItemTrie, constrained_beam_search
from recbias.decoding.d3 import (
    D3Config,
    d3_beam,
    d3_score_hook,
    item_distribution,
    popularity_distribution,
    subtree_ranges,
)
from recbias.errors import ConfigError, RecbiasError

EOS = 2
TITLES = tiny.MOVIES
N_ITEMS = len(TITLES)
PROMPTS = ['The user has watched "Heat"\n### Response:\n', "### Response:\n"]

# A 4-item trie: 0 = [5, 7, 2], 1 = [5, 8, 2], 2 = [6, 2], 3 = [9, 2]
SEQS = [[5, 7, 2], [5, 8, 2], [6, 2], [9, 2]]
PROBS = torch.tensor([[0.1, 0.2, 0.3, 0.4], [0.4, 0.4, 0.1, 0.1]], dtype=torch.float64)


def _view(trie, parent, logp, prompt):
    token, child, valid = trie.edges(torch.tensor(parent))
    logp = torch.tensor(logp).masked_fill(~valid, float("-inf"))
    return EdgeScores(logp, torch.tensor(parent), token, child, valid, torch.tensor(prompt), 0)


def test_mixed_guidance_matches_hand_computation():
    trie = ItemTrie.build(SEQS)
    hook = d3_score_hook(trie, PROBS, D3Config(guidance=0.25, assistant="sasrec"))
    five = trie.walk([5])
    view = _view(
        trie, [0, 0, five], [[-1.0, -2.0, -0.5], [-1.0, -2.0, -0.5], [-0.3, -1.5, 0]], [0, 1, 1]
    )
    out = hook(view)
    # root, prompt 0: tokens 5, 6, 9 hold masses 0.1+0.2, 0.3, 0.4 (total 1)
    root0 = [0.25 * -1.0 + 0.75 * math.log(0.3), 0.25 * -2.0 + 0.75 * math.log(0.3)]
    root0.append(0.25 * -0.5 + 0.75 * math.log(0.4))
    # root, prompt 1: masses 0.8, 0.1, 0.1
    root1 = [0.25 * -1.0 + 0.75 * math.log(0.8), 0.25 * -2.0 + 0.75 * math.log(0.1)]
    root1.append(0.25 * -0.5 + 0.75 * math.log(0.1))
    # after token 5, prompt 1: tokens 7, 8 hold 0.4 and 0.4 of 0.8; the third slot is padding
    five1 = [0.25 * -0.3 + 0.75 * math.log(0.5), 0.25 * -1.5 + 0.75 * math.log(0.5)]
    torch.testing.assert_close(out[0], torch.tensor(root0))
    torch.testing.assert_close(out[1], torch.tensor(root1))
    torch.testing.assert_close(out[2, :2], torch.tensor(five1))
    assert out[2, 2] == float("-inf")


def test_guidance_one_leaves_scores_unchanged():
    trie = ItemTrie.build(SEQS)
    view = _view(trie, [0], [[-1.0, -2.0, -0.5]], [0])
    out = d3_score_hook(trie, PROBS, D3Config(guidance=1.0, assistant="sasrec"))(view)
    assert torch.equal(out, view.logp)


def test_subtree_ranges_are_contiguous_item_sets():
    trie = ItemTrie.build([[3, 1, 2], [9, 2], [3, 0, 2], [3, 1, 4, 2]], item_ids=[10, 11, 12, 13])
    order, lo, hi = subtree_ranges(trie)
    seqs = trie.item_sequences()
    for node in range(trie.n_nodes):
        below = {int(trie.item_ids[i]) for i in order[lo[node] : hi[node]]}
        path = []
        n = node
        while n > 0:
            path.insert(0, int(trie.token_in[n]))
            n = int(trie.parent[n])
        expected = {int(trie.item_ids[i]) for i, s in enumerate(seqs) if s[: len(path)] == path}
        assert below == expected, node


@pytest.fixture(scope="module")
def beam_setup(byte_tok):
    seqs = [[*byte_tok(f'"{t}"', add_special_tokens=False).input_ids, EOS] for t in TITLES]
    prompts = [byte_tok(p, add_special_tokens=False).input_ids for p in PROMPTS]
    return ItemTrie.build(seqs), prompts, tiny.tiny_llama(len(byte_tok), seed=1)


def _search(beam_setup, hook, width=N_ITEMS):
    trie, prompts, model = beam_setup
    cfg = d3_beam(BeamConfig(num_beams=width, length_penalty=1.0))
    return constrained_beam_search(model, prompts, trie, cfg, 0, hook)


def test_guidance_zero_ranks_by_the_assistant(beam_setup):
    trie = beam_setup[0]
    scores = np.array(
        [[0.3, -1.0, 2.0, 0.1, 1.5, -0.2, 0.9, 0.0], [1.0, 0.5, 0.0, 2.5, 0.2, 3.0, -1.0, 0.8]]
    )
    probs = item_distribution(scores)
    results = _search(beam_setup, d3_score_hook(trie, probs, D3Config(0.0, "sasrec")))
    for row, res in enumerate(results):
        assert res.items == np.argsort(-scores[row], kind="stable").tolist()
        np.testing.assert_allclose(res.scores, np.log(probs[row, res.items].numpy()), atol=1e-5)


def test_guidance_one_equals_plain_decoding(beam_setup):
    trie = beam_setup[0]
    probs = popularity_distribution(np.arange(len(TITLES)))
    plain = _search(beam_setup, None, width=4)
    guided = _search(beam_setup, d3_score_hook(trie, probs, D3Config(1.0, "popularity")), width=4)
    assert [r.items for r in guided] == [r.items for r in plain]
    assert [r.scores for r in guided] == [r.scores for r in plain]


def test_one_row_is_shared_by_every_prompt(beam_setup):
    trie = beam_setup[0]
    counts = np.array([5, 1, 9, 0, 3, 7, 2, 4])
    results = _search(
        beam_setup,
        d3_score_hook(trie, popularity_distribution(counts), D3Config(0.0, "popularity")),
    )
    for res in results:  # add-one smoothing keeps the unseen item 3, last
        assert res.items == np.argsort(-counts, kind="stable").tolist()


def test_d3_beam_has_no_length_normalisation():
    assert d3_beam(BeamConfig(length_penalty=1.0)).length_penalty == 0.0


@pytest.mark.parametrize(
    ("cfg", "key"),
    [
        (D3Config(guidance=1.5, assistant="sasrec"), "guidance"),
        (D3Config(guidance=-0.1, assistant="sasrec"), "guidance"),
        (D3Config(guidance=0.5, assistant="none"), "guidance"),
        (D3Config(assistant="knn"), "assistant"),  # type: ignore[arg-type]
    ],
)
def test_invalid_config_names_the_key(cfg, key):
    with pytest.raises(ConfigError, match=rf"decode\.d3\.{key}"):
        cfg.validate("decode.d3")


def test_bad_item_probs_are_rejected():
    trie = ItemTrie.build(SEQS)
    cfg = D3Config(0.5, "sasrec")
    with pytest.raises(RecbiasError, match="items"):
        d3_score_hook(trie, PROBS[:, :3], cfg)
    with pytest.raises(RecbiasError, match="non-negative"):
        d3_score_hook(trie, -PROBS, cfg)
    with pytest.raises(RecbiasError, match="zero mass"):
        d3_score_hook(trie, torch.zeros(1, 4), cfg)
