"""IG maths, the IGD objective and IGD's decoding calibration, against hand computations."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import tiny
from objective_helpers import TITLES, fake_samples, loss_and_grads, make_ctx, setup_samples
from recbias.baselines import count_items
from recbias.config import from_dict
from recbias.decoding import BeamConfig, EdgeScores, ItemTrie, constrained_beam_search
from recbias.decoding import information_gain as ig
from recbias.decoding.igd_calibration import IGDDecodeConfig, calibration_weights, igd_score_hook
from recbias.errors import ConfigError, RecbiasError
from recbias.llmrec import build_trie
from recbias.lm.batching import collate
from recbias.objectives import ObjectiveConfig, build_objective
from recbias.objectives.igd import IGDConfig, IGDObjective
from recbias.train.loop import TrainConfig

# A hand-built catalog: item -> tokens (9 = terminator) and training-target counts (total 10).
SEQS = [[1, 2, 9], [1, 3, 9], [4, 5, 9], [4, 5, 6, 9], [7, 9]]
COUNTS = np.array([4, 2, 1, 1, 2])


def h(p: float) -> float:
    return -p * math.log(p)


# --- IG maths -------------------------------------------------------------------------------


def test_entropy_and_gain_match_hand_computation():
    trie = ItemTrie.build(SEQS)
    info = ig.trie_information(trie, COUNTS)
    p = {"a": 0.4, "b": 0.2, "c": 0.1, "d": 0.1, "e": 0.2}
    root = sum(h(v) for v in p.values())
    expected_s = {
        (): root,
        (1,): h(0.4) + h(0.2),
        (1, 2): h(0.4),
        (4,): 2 * h(0.1),
        (4, 5): 2 * h(0.1),
        (4, 5, 6): h(0.1),
        (7,): h(0.2),
    }
    for path, s in expected_s.items():
        assert info.entropy[trie.walk(path)].item() == pytest.approx(s, abs=1e-12)
    assert info.gain[trie.walk([1])].item() == pytest.approx(root - h(0.4) - h(0.2), abs=1e-12)
    assert info.gain[trie.walk([4, 5, 9])].item() == pytest.approx(h(0.1), abs=1e-12)
    assert info.gain[0].item() == 0.0


def test_zero_gain_is_exactly_the_forced_tokens():
    trie = ItemTrie.build(SEQS)
    info = ig.trie_information(trie, COUNTS)
    zero = {tuple(p) for p in ([1, 2, 9], [1, 3, 9], [4, 5], [4, 5, 6, 9], [7, 9])}
    for node in range(1, trie.n_nodes):
        path = tuple(_path(trie, node))
        assert bool(info.zero_gain[node]) == (path in zero), path
        assert (info.gain[node].item() == 0.0) == (path in zero), path


def _path(trie, node):
    out = []
    while node > 0:
        out.append(int(trie.token_in[node]))
        node = int(trie.parent[node])
    return out[::-1]


def test_zero_count_items_carry_no_information():
    # An item never seen as a target (p = 0) does not make its sibling informative.
    trie = ItemTrie.build([*SEQS, [7, 8, 9]])
    info = ig.trie_information(trie, np.append(COUNTS, 0))
    assert bool(info.zero_gain[trie.walk([7, 9])])
    assert info.entropy[trie.walk([7, 8])].item() == 0.0
    assert info.support[trie.walk([7])].item() == 1


def test_token_gain_and_zero_share_of_samples():
    trie = ItemTrie.build(SEQS)
    info = ig.trie_information(trie, COUNTS)
    samples = fake_samples(SEQS, [0, 4, 3])
    nodes, lengths = ig.walk_samples(trie, samples, list("abcde"))
    zero = ig.zero_gain_tokens(info, nodes)
    assert zero.tolist() == [
        [False, False, True, False],
        [False, True, False, False],
        [False, True, False, True],
    ]
    gain = ig.token_gain(info, nodes)
    assert gain[2, 2].item() == pytest.approx(h(0.1), abs=1e-12)
    assert ig.zero_ig_share(zero, lengths) == pytest.approx(4 / 9)


def test_target_off_the_trie_names_sample_and_title():
    trie = ItemTrie.build(SEQS[:4])
    samples = fake_samples(SEQS, [0, 4])
    with pytest.raises(RecbiasError, match=r"sample 1: the target item 4 \('Eve'\)"):
        ig.walk_samples(trie, samples, ["a", "b", "c", "d", "Eve"])


# --- IGD objective --------------------------------------------------------------------------


def test_igd_beta_one_is_sft(byte_tok):
    model = tiny.tiny_llama(len(byte_tok), seed=1)
    ctx = make_ctx(byte_tok, model)
    igd = IGDObjective(IGDConfig(beta=1.0))
    igd.setup(ctx)
    sft = build_objective(ObjectiveConfig())
    batch = collate(ctx.samples[:5], byte_tok.pad_token_id)
    loss_a, grads_a = loss_and_grads(model, sft, batch)
    loss_b, grads_b = loss_and_grads(model, igd, batch)
    torch.testing.assert_close(loss_b, loss_a, atol=1e-6, rtol=1e-6)
    for ga, gb in zip(grads_a, grads_b, strict=True):
        torch.testing.assert_close(gb, ga, atol=1e-7, rtol=1e-5)


def test_igd_weights_are_beta_on_zero_gain_tokens(byte_tok):
    ctx = make_ctx(byte_tok, tiny.tiny_llama(len(byte_tok)))
    obj = IGDObjective(IGDConfig(beta=0.1))
    obj.setup(ctx)
    ref = ig.target_trie(ctx.builder, TITLES, ctx.item_counts)
    info = ig.trie_information(ref, ctx.item_counts)
    batch = collate(ctx.samples[3:7], byte_tok.pad_token_id)
    obj.prepare(batch)
    expected = []
    for s in ctx.samples[3:7]:
        nodes, _ = ig.walk_samples(ref, [s], TITLES)
        expected += [0.1 if z else 1.0 for z in ig.zero_gain_tokens(info, nodes)[0].tolist()]
    torch.testing.assert_close(batch.meta["igd_weight"], torch.tensor(expected))
    last = batch.meta["position"] == batch.meta["target_length"] - 1
    assert (batch.meta["igd_weight"][last] == 0.1).all()  # EOS after the closing quote is forced
    assert 0 < obj.zero_ig_share < 1


def test_igd_catalog_reference_uses_the_decoding_trie(byte_tok):
    ctx = make_ctx(byte_tok, tiny.tiny_llama(len(byte_tok)))
    obj = IGDObjective(IGDConfig(reference="catalog"))
    obj.setup(ctx)
    assert obj.zero_ig_share is not None


def test_igd_target_outside_reference_trie_raises(byte_tok):
    ctx = make_ctx(byte_tok, tiny.tiny_llama(len(byte_tok)))
    ctx.trie = build_trie(ctx.builder, TITLES, [0, 1, 2])
    target = next(s for s in ctx.samples if s.target_item > 2)
    with pytest.raises(
        RecbiasError, match=f"sample {target.sample_id}: .*{TITLES[target.target_item]!r}"
    ):
        IGDObjective(IGDConfig(reference="catalog")).setup(ctx)


@pytest.mark.parametrize("beta", [-0.1, 1.5])
def test_igd_beta_outside_unit_interval_rejected_at_load(beta):
    with pytest.raises(ConfigError, match=r"train\.objective\.igd\.beta"):
        from_dict(TrainConfig, {"objective": {"name": "igd", "igd": {"beta": beta}}}, "train")


def test_igd_is_selectable_from_config():
    cfg = from_dict(TrainConfig, {"objective": {"name": "igd", "igd": {"beta": 0.3}}}, "train")
    obj = build_objective(cfg.objective)
    assert isinstance(obj, IGDObjective) and obj.cfg.beta == 0.3


# --- IGD decoding calibration ---------------------------------------------------------------


def _root_edges(trie, logp):
    parent = torch.zeros(1, dtype=torch.long)
    token, child, valid = trie.edges(parent)
    return EdgeScores(logp, parent, token, child, valid, torch.zeros(1, dtype=torch.long), 0)


def test_calibration_alpha_zero_leaves_scores_unchanged():
    trie = ItemTrie.build(SEQS)
    edges = _root_edges(trie, torch.log(torch.tensor([[0.5, 0.3, 0.2]])))
    hook = igd_score_hook(trie, COUNTS, IGDDecodeConfig(alpha=0.0))
    assert torch.equal(hook(edges), edges.logp)


def test_calibration_boosts_the_high_gain_sibling():
    trie = ItemTrie.build(SEQS)
    edges = _root_edges(trie, torch.full((1, 3), math.log(1 / 3)))  # children 1, 4, 7
    out = igd_score_hook(trie, COUNTS, IGDDecodeConfig(alpha=0.2))(edges)
    # IG(7) = S − h(.2) is the largest, IG(1) = S − h(.4) − h(.2) the smallest
    assert edges.token[0, out[0].argmax()].item() == 7
    assert out[0, 0].item() == pytest.approx(math.log(1 / 3))  # min-IG edge keeps w_d = 1
    assert out[0, 2].item() == pytest.approx(0.8 * math.log(1 / 3), rel=1e-6)


def test_calibration_single_child_and_padding_keep_weight_one():
    gain = torch.tensor([[0.7, 0.0], [0.3, 0.9]])
    valid = torch.tensor([[True, False], [True, True]])
    w = calibration_weights(gain, valid, alpha=0.5)
    assert w[0].tolist() == [1.0, 1.0]
    assert w[1, 0].item() == 1.0 and w[1, 1].item() == pytest.approx(0.5, rel=1e-6)


def test_calibration_alpha_rejected_outside_unit_interval():
    with pytest.raises(ConfigError, match="decode.igd.alpha"):
        IGDDecodeConfig(alpha=-0.1).validate("decode.igd")


def test_beam_search_with_calibration_returns_catalog_items(byte_tok):
    builder, df, samples = setup_samples(byte_tok)
    items = [0, 2, 3, 4, 5, 6, 7]
    trie = build_trie(builder, TITLES, items)
    counts = count_items(df, len(TITLES))
    assert (counts[items] > 0).all()  # no unsupported edge: both treatments are the paper's
    hook = igd_score_hook(trie, counts, IGDDecodeConfig(alpha=0.4))
    model = tiny.tiny_llama(len(byte_tok), seed=1)
    prompts = [s.prompt.input_ids for s in samples[:3]]
    cfg = BeamConfig(num_beams=4, length_penalty=0.0)
    found = constrained_beam_search(model, prompts, trie, cfg, byte_tok.pad_token_id, hook)
    for res in found:
        assert len(res.items) == 4 and set(res.items) <= set(items)
    plain = constrained_beam_search(model, prompts, trie, cfg, byte_tok.pad_token_id)
    neutral = igd_score_hook(trie, counts, IGDDecodeConfig(alpha=0.0))
    same = constrained_beam_search(model, prompts, trie, cfg, byte_tok.pad_token_id, neutral)
    assert [r.items for r in same] == [r.items for r in plain]


# --- edges into subtrees that hold no training target ----------------------------------------

# SEQS plus two items that are never a training target: [8, 9] off the root, [1, 8, 9] under (1,).
UNSEEN_SEQS = [*SEQS, [8, 9], [1, 8, 9]]
UNSEEN_COUNTS = np.array([*COUNTS, 0, 0])


def _edges_at(trie, path, logp):
    parent = torch.tensor([trie.walk(path)])
    token, child, valid = trie.edges(parent)
    return EdgeScores(logp, parent, token, child, valid, torch.zeros(1, dtype=torch.long), 0)


def _expected_weights(alpha):
    """Eq. 10 by hand over the supported children only: root (1, 4, 7) and node (1,) (2, 3)."""
    s = h(0.4) + 2 * h(0.2) + 2 * h(0.1)
    ig_root = {1: s - h(0.4) - h(0.2), 4: s - 2 * h(0.1), 7: s - h(0.2)}
    lo, hi = min(ig_root.values()), max(ig_root.values())
    root = {t: 1 - alpha * (g - lo) / (hi - lo + 1e-7) for t, g in ig_root.items()}
    ig_one = {2: h(0.2), 3: h(0.4)}  # S((1,)) − S(child)
    lo, hi = min(ig_one.values()), max(ig_one.values())
    one = {t: 1 - alpha * (g - lo) / (hi - lo + 1e-7) for t, g in ig_one.items()}
    return {(): root, (1,): one}


def test_unseen_item_edge_has_the_largest_raw_gain():
    # why the treatment exists: S(child) = 0 makes IG = S(parent), the largest among siblings
    trie = ItemTrie.build(UNSEEN_SEQS)
    info = ig.trie_information(trie, UNSEEN_COUNTS)
    for path in ((), (1,)):
        token, child, valid = trie.edges(torch.tensor([trie.walk(path)]))
        gains = info.gain[child[valid]]
        assert token[valid][gains.argmax()].item() == 8


@pytest.mark.parametrize("unsupported", ["no_boost", "exclude"])
def test_unseen_item_is_not_boosted_and_supported_edges_keep_eq_10(unsupported):
    trie = ItemTrie.build(UNSEEN_SEQS)
    alpha = 0.3
    hook = igd_score_hook(trie, UNSEEN_COUNTS, IGDDecodeConfig(alpha, unsupported=unsupported))
    for path, weights in _expected_weights(alpha).items():
        degree = int(trie.edges(torch.tensor([trie.walk(path)]))[2].sum())
        logp = torch.full((1, degree), math.log(1 / degree))
        edges = _edges_at(trie, path, logp)
        out = hook(edges)
        for d in range(degree):
            tok = int(edges.token[0, d])
            if tok == 8:  # the unseen item's edge
                want = math.log(1 / degree) if unsupported == "no_boost" else -math.inf
            else:
                want = weights[tok] * math.log(1 / degree)
            assert out[0, d].item() == pytest.approx(want, rel=1e-6), (path, tok)


def test_default_calibration_decodes_the_training_targets_only(byte_tok):
    """Default (exclude) over the catalog == IGD over its training-target trie; no_boost keeps
    the unseen items but never boosts them."""
    builder, df, samples = setup_samples(byte_tok)
    counts = count_items(df.head(5), len(TITLES))  # targets 0, 1, 3, 4, 6 of the 8 titles
    targets = np.flatnonzero(counts).tolist()
    assert 0 < len(targets) < len(TITLES)
    catalog = build_trie(builder, TITLES, range(len(TITLES)))
    reference = ig.target_trie(builder, TITLES, counts)
    assert IGDDecodeConfig().unsupported == "exclude"
    model = tiny.tiny_llama(len(byte_tok), seed=1)
    prompts = [s.prompt.input_ids for s in samples[:3]]
    cfg = BeamConfig(num_beams=4, length_penalty=0.0)
    pad = byte_tok.pad_token_id

    def search(trie, **kw):
        hook = igd_score_hook(trie, counts, IGDDecodeConfig(alpha=0.4, **kw))
        return constrained_beam_search(model, prompts, trie, cfg, pad, hook)

    ours, paper = search(catalog), search(reference)
    assert [r.items for r in ours] == [r.items for r in paper]
    for a, b in zip(ours, paper, strict=True):
        assert set(a.items) <= set(targets)
        assert a.scores == pytest.approx(b.scores, rel=1e-6)
    kept = search(catalog, unsupported="no_boost")
    assert all(len(r.items) == 4 for r in kept)


def test_igd_settings_that_would_undo_the_candidate_set_are_config_errors():
    from recbias.llmrec import RunConfig

    def load(**decode):
        return from_dict(RunConfig, {"decode": {"calibration": ["igd"], **decode}})

    with pytest.raises(ConfigError, match="decode.beam.renormalize"):
        load(beam={"renormalize": True})
    load(beam={"renormalize": True}, candidates="train_targets")
    load(beam={"renormalize": True}, igd={"unsupported": "no_boost"})
    d3 = {"assistant": "popularity", "guidance": 0.0}
    with pytest.raises(ConfigError, match="decode.d3.guidance"):
        load(calibration=["igd", "d3"], d3=d3)
    load(calibration=["d3", "igd"], d3=d3)
    with pytest.raises(ConfigError, match="decode.igd.unsupported"):
        load(igd={"unsupported": "boost"})
