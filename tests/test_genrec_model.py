"""The semantic-ID transformer: position biases, trie decoding, exact scores, attention hooks."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from recbias.genrec.attention import alibi_bias
from recbias.genrec.codes import BOS, PAD, CodeTrie, TokenLayout, encode_histories
from recbias.genrec.config import GenRecConfig
from recbias.genrec.recommender import GenerativeRecommender
from recbias.genrec.semantic_ids import SemanticIds, codebook_report, collision_suffix

ARCHS = ["encoder_decoder", "decoder_only"]
POSITIONS = ["none", "absolute", "alibi", "rope"]


def hand_codes() -> SemanticIds:
    """9 items, L = 2 levels of C = 3 codes, 3 items share prefix (0, 0)."""
    prefix = np.array([[0, 0], [0, 0], [0, 1], [1, 2], [0, 0], [2, 1], [1, 0], [2, 2], [1, 1]])
    codes = np.concatenate([prefix, collision_suffix(prefix)[:, None]], axis=1)
    return SemanticIds(codes, [3, 3, 3], codebook_report(codes, 3))


def untrained(**kw) -> GenerativeRecommender:
    cfg = GenRecConfig(
        d_model=16, heads=2, ff_dim=32, max_len=4, dropout=0.0, beam_size=4, dtype="fp32", **kw
    )
    return GenerativeRecommender(cfg).fit_semantic_ids(hand_codes())


def samples(histories: list[list[int]]) -> pd.DataFrame:
    n = len(histories)
    return pd.DataFrame(
        {"sample_id": np.arange(n) + 100, "user": [str(i) for i in range(n)],
         "history": histories, "target": [0] * n}
    )  # fmt: skip


HISTS = [[1, 2, 3], [4], [5, 6, 7, 8, 0, 1], [8, 8, 2, 0]]


def test_alibi_bias_is_minus_m_times_distance_in_items():
    q = torch.tensor([[3]])
    k = torch.tensor([[0, 0, 1, 1, 2, 2]])  # two tokens per item
    assert alibi_bias(q, k, 0.5).tolist() == [[[-1.5, -1.5, -1.0, -1.0, -0.5, -0.5]]]


def test_alibi_bias_reaches_the_model_in_items_not_tokens():
    rec = untrained(position="alibi", alibi_m=0.7)
    hist = encode_histories([[1, 2]], rec.item_tokens, max_len=4)
    memory = rec.net.memory(hist)
    # target slot 4; items sit in slots 2 and 3 (3 tokens each); slots 0-1 are padding
    got = memory.bias[0, 0, 0, 0]
    assert got[6:].tolist() == pytest.approx([-1.4] * 3 + [-0.7] * 3)
    assert (got[:6] < -1e8).all()


def test_history_encoding_left_pads_and_keeps_the_most_recent_items():
    tokens = torch.arange(27).reshape(9, 3) + 10
    batch = encode_histories([[1, 2, 3, 4, 5], [7]], tokens, max_len=2)
    assert batch.tokens.tolist() == [[22, 23, 24, 25, 26, 27], [PAD] * 3 + [31, 32, 33]]
    assert batch.slot[0].tolist() == [0, 0, 0, 1, 1, 1]
    assert batch.valid.tolist() == [[True] * 6, [False] * 3 + [True] * 3]


def test_trie_children_and_token_layout():
    sid = hand_codes()
    layout = TokenLayout(tuple(sid.sizes))
    assert layout.offsets == (2, 5, 8) and layout.vocab == 11
    trie = CodeTrie(sid.codes, sid.sizes)
    assert (trie.children[0][0] >= 0).tolist() == [True, True, True]
    last = trie.children[2]
    # each item is reachable at exactly one (prefix, suffix) leaf
    assert sorted(last[last >= 0].tolist()) == list(range(9))
    p = trie.item_prefix[2][4]  # item 4 has prefix (0, 0) and suffix 2
    assert last[p].tolist() == [0, 1, 4]


@pytest.mark.parametrize("arch", ARCHS)
def test_beam_search_returns_k_distinct_catalog_items_with_their_exact_scores(arch):
    rec = untrained(architecture=arch)
    recs = rec.recommend(samples(HISTS), k=4)
    assert recs.items.shape == (4, 4) and recs.sample_ids.tolist() == [100, 101, 102, 103]
    assert ((recs.items >= 0) & (recs.items < 9)).all()
    assert all(len(set(row)) == 4 for row in recs.items.tolist())
    exact = rec.scores(samples(HISTS)).double().numpy()
    np.testing.assert_allclose(recs.scores, np.take_along_axis(exact, recs.items, 1), atol=1e-5)
    assert (np.diff(recs.scores, axis=1) <= 1e-6).all()


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("position", POSITIONS)
def test_full_width_beam_top1_is_the_argmax_of_exact_scores(arch, position):
    rec = untrained(architecture=arch, position=position)
    rec.cfg.beam_size = 9
    recs = rec.recommend(samples(HISTS), k=9)
    exact = rec.scores(samples(HISTS))
    assert recs.items[:, 0].tolist() == exact.argmax(1).tolist()
    assert sorted(recs.items[0].tolist()) == list(range(9))  # width ≥ n: the whole catalog


def plain_item_loglik(rec: GenerativeRecommender, history: list[int], item: int) -> float:
    """One item at a time: run BOS + code through the model and sum per-level log-softmax."""
    hist = encode_histories([history], rec.item_tokens, rec.cfg.max_len)
    code = rec.item_tokens[item]
    dec_in = torch.cat([torch.tensor([BOS]), code[:-1]])[None, None]
    logits = rec.net(hist, dec_in)[0, 0]
    total = 0.0
    for t, tok in enumerate(code.tolist()):
        off, size = rec.layout.offsets[t], rec.layout.sizes[t]
        total += torch.log_softmax(logits[t, off : off + size], -1)[tok - off].item()
    return total


@pytest.mark.parametrize("arch", ARCHS)
def test_exact_scores_match_a_plain_per_item_loop_and_are_log_probs(arch):
    rec = untrained(architecture=arch, position="rope")
    rec.net.eval()
    got = rec.scores(samples(HISTS))
    with torch.no_grad():
        want = [[plain_item_loglik(rec, h, i) for i in range(9)] for h in HISTS]
    np.testing.assert_allclose(got.numpy(), want, atol=1e-5)
    assert (torch.logsumexp(got, 1) <= 1e-6).all()  # leaks mass to codes outside the catalog
    renorm = rec.scores(samples(HISTS), renormalize=True)
    np.testing.assert_allclose(torch.logsumexp(renorm, 1).numpy(), 0.0, atol=1e-5)


def one_sequence_logits(rec: GenerativeRecommender, history: list[int], item: int) -> torch.Tensor:
    """Decoder-only reference: history + BOS + code prefix as one causal sequence, [T, vocab]."""
    net, depth, max_len = rec.net, rec.layout.depth, rec.cfg.max_len
    hist = encode_histories([history], rec.item_tokens, max_len)
    code = rec.item_tokens[item]
    tokens = torch.cat([hist.tokens[0], torch.tensor([BOS]), code[:-1]])
    slot = torch.cat([hist.slot[0], torch.full((depth,), max_len)])
    valid = torch.cat([hist.valid[0], torch.ones(depth, dtype=torch.bool)])
    n = len(tokens)
    bias = torch.where(valid, 0.0, -1e9)[None, :] + torch.full((n, n), -1e9).triu(1)
    bias = bias + alibi_bias(slot[None], slot[None], rec.cfg.alibi_m)[0]
    x = net._embed(tokens[None], slot[None])[:, None]
    for block in net.decoder:
        x = block(x, bias[None, None, None], None)
    return net.head(net.out_ln(x))[0, 0, -depth:] + net.level_mask


def test_decoder_only_cached_history_equals_one_causal_sequence():
    rec = untrained(architecture="decoder_only", position="alibi", alibi_m=0.4)
    rec.net.eval()
    with torch.no_grad():
        for item in (0, 4, 7):
            ref = one_sequence_logits(rec, [1, 2, 3], item)
            hist = encode_histories([[1, 2, 3]], rec.item_tokens, rec.cfg.max_len)
            dec_in = torch.cat([torch.tensor([BOS]), rec.item_tokens[item][:-1]])[None, None]
            got = rec.net(hist, dec_in)[0, 0]
            finite = torch.isfinite(ref)
            assert torch.equal(finite, torch.isfinite(got))
            torch.testing.assert_close(got[finite], ref[finite], atol=1e-5, rtol=1e-5)


def test_encoder_with_position_none_is_permutation_equivariant_over_items():
    rec = untrained(architecture="encoder_decoder", position="none")
    hist = [[1, 2, 3, 5], [5, 3, 1, 2]]  # row 1 item j = row 0 item perm[j]
    perm = [3, 2, 0, 1]
    scores = rec.scores(samples(hist))
    assert torch.allclose(scores[0], scores[1], atol=1e-5)
    with torch.no_grad():
        states = rec.net.memory(encode_histories(hist, rec.item_tokens, 4)).states
    a, b = states[0].reshape(4, 3, -1), states[1].reshape(4, 3, -1)
    torch.testing.assert_close(a[perm], b, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("position", ["absolute", "alibi", "rope"])
def test_positions_make_history_order_matter(position):
    rec = untrained(position=position)
    scores = rec.scores(samples([[1, 2, 3, 5], [5, 3, 1, 2]]))
    assert not torch.allclose(scores[0], scores[1], atol=1e-4)


@pytest.mark.parametrize("arch", ARCHS)
def test_history_attention_rows_sum_to_one_and_padding_gets_none(arch):
    rec = untrained(architecture=arch, position="alibi", alibi_m=0.3)
    att = rec.history_attention(samples([*HISTS, []]))
    assert att.shape == (5, 4)
    np.testing.assert_allclose(att[:4].sum(1).numpy(), 1.0, atol=1e-5)
    assert att[1, :3].tolist() == [0.0, 0.0, 0.0] and att[1, 3] == pytest.approx(1.0)
    assert att[0, 0] == 0.0 and (att[0, 1:] > 0).all()
    assert att[4].tolist() == [0.0] * 4  # empty history


def test_stronger_alibi_moves_attention_to_recent_items():
    near = []
    for m in (0.0, 2.0):
        rec = untrained(position="alibi", alibi_m=m)
        near.append(rec.history_attention(samples(HISTS))[:, -1].mean().item())
    assert near[1] > near[0]


@pytest.mark.parametrize("arch", ARCHS)
def test_attention_noise_zero_is_a_no_op_and_positive_changes_attention(arch):
    rec = untrained(architecture=arch)
    s = samples(HISTS)
    base_att, base_scores = rec.history_attention(s), rec.scores(s)
    rec.set_attention_noise(0.0, seed=3)
    assert torch.equal(rec.history_attention(s), base_att) and torch.equal(
        rec.scores(s), base_scores
    )
    rec.set_attention_noise(1.0, seed=3)
    noisy = rec.history_attention(s)
    assert not torch.allclose(noisy, base_att, atol=1e-3)
    np.testing.assert_allclose(noisy[:, :].sum(1).numpy(), 1.0, atol=1e-5)
    rec.set_attention_noise(1.0, seed=3)
    assert torch.equal(rec.history_attention(s), noisy)  # seeded
