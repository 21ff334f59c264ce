"""MSL (+ATS), Pos, CFT and Reweight against plain references on random tensors and the tiny model."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

import tiny

# The tiny-model fixtures are shared with the IGD tests (same samples, context and trainer).
from objective_helpers import TITLES, loss_and_grads, make_ctx, train
from recbias.config import from_dict
from recbias.decoding import ItemTrie
from recbias.errors import ConfigError, RecbiasError
from recbias.lm.batching import TokenizedSample, collate
from recbias.objectives import ObjectiveConfig, build_objective
from recbias.objectives.cft import CFTConfig, CFTObjective
from recbias.objectives.igd import IGDConfig
from recbias.objectives.msl import (
    MSLConfig,
    MSLObjective,
    ats_temperature,
    first_branch,
    restricted_cross_entropy,
)
from recbias.objectives.pos import PosConfig, positional_weights
from recbias.objectives.reweight import ReweightConfig, ReweightObjective
from recbias.recommender import build_trie
from recbias.train.loop import TrainConfig, target_logits

# --- MSL core -------------------------------------------------------------------------------


def _all_valid(n, vocab):
    return torch.arange(vocab).expand(n, vocab), torch.ones(n, vocab, dtype=torch.bool)


def test_msl_all_valid_tau_one_is_full_vocabulary_cross_entropy():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(7, 11, generator=g, requires_grad=True)
    labels = torch.randint(0, 11, (7,), generator=g)
    ours = restricted_cross_entropy(logits, labels, *_all_valid(7, 11), 1.0)
    ref = F.cross_entropy(logits, labels, reduction="none")
    torch.testing.assert_close(ours, ref)
    (g_ours,) = torch.autograd.grad(ours.sum(), logits)
    (g_ref,) = torch.autograd.grad(ref.sum(), logits)
    torch.testing.assert_close(g_ours, g_ref)


def test_msl_restricted_softmax_matches_hand_formula():
    logits = torch.tensor([[2.0, -1.0, 0.5, 3.0]])
    allowed, valid = torch.tensor([[0, 2, 1]]), torch.tensor([[True, True, False]])
    tau = 4.5
    expected = -2.0 / tau + math.log(math.exp(2.0 / tau) + math.exp(0.5 / tau))
    ours = restricted_cross_entropy(logits, torch.tensor([0]), allowed, valid, tau)
    assert ours.item() == pytest.approx(expected, rel=1e-6)


def test_msl_single_valid_token_has_exactly_zero_loss_and_gradient():
    logits = torch.randn(3, 9, requires_grad=True)
    labels = torch.tensor([4, 0, 8])
    allowed = torch.tensor([[4, 0], [0, 0], [8, 0]])
    valid = torch.tensor([[True, False], [True, False], [True, False]])
    loss = restricted_cross_entropy(logits, labels, allowed, valid, 4.5)
    assert loss.tolist() == [0.0, 0.0, 0.0]
    (grad,) = torch.autograd.grad(loss.sum(), logits)
    assert torch.count_nonzero(grad) == 0


def test_msl_is_finite_on_huge_logits():
    logits = (torch.randn(5, 13) * 1e4).requires_grad_()
    labels = torch.randint(0, 13, (5,))
    loss = restricted_cross_entropy(logits, labels, *_all_valid(5, 13), 4.5).sum()
    (grad,) = torch.autograd.grad(loss, logits)
    assert torch.isfinite(loss) and torch.isfinite(grad).all()


def test_ats_temperature_formula():
    diff, var, c = torch.tensor(6.0), torch.tensor(4.0), math.log(8 * 0.25)
    expected = (6.0 + math.sqrt(36.0 - 2 * c * 4.0)) / (2 * c)
    assert ats_temperature(diff, var, c).item() == pytest.approx(expected, rel=1e-6)
    # no real root: sqrt clamps at 0
    assert ats_temperature(torch.tensor(1.0), torch.tensor(9.0), c).item() == pytest.approx(
        1.0 / (2 * c), rel=1e-6
    )


def test_first_branch_skips_forced_prefix():
    trie = ItemTrie.build([[5, 1, 2], [5, 1, 3], [5, 4]])
    assert trie.token_in[first_branch(trie)].item() == 5


# --- MSL objective on the tiny model --------------------------------------------------------


def _dense_msl_reference(trie, batch, logits, tau):
    """Plain reference: one [V] boolean mask per target token, built by walking the trie."""
    losses = []
    rows = batch.meta["sample"].tolist()
    seqs = [
        batch.labels[r, 1:][batch.labels[r, 1:] != -100].tolist()
        for r in range(len(batch.sample_ids))
    ]
    for k, (row, pos) in enumerate(zip(rows, batch.meta["position"].tolist(), strict=True)):
        mask = torch.zeros(logits.shape[1], dtype=torch.bool)
        mask[trie.allowed(trie.walk(seqs[row][:pos]))] = True
        z = logits[k].masked_fill(~mask, -torch.inf) / tau
        losses.append(F.cross_entropy(z[None], batch.target_labels[k : k + 1]))
    return torch.stack(losses).sum()


def test_msl_objective_matches_dense_mask_reference(byte_tok):
    model = tiny.tiny_llama(len(byte_tok), seed=1)
    ctx = make_ctx(byte_tok, model)
    obj = MSLObjective(MSLConfig(tau=4.5))
    obj.setup(ctx)
    batch = collate(ctx.samples[:4], byte_tok.pad_token_id)
    obj.prepare(batch)
    with torch.no_grad():
        logits = target_logits(model, batch)
    ours = obj(logits, batch.target_labels, batch.meta)
    torch.testing.assert_close(ours, _dense_msl_reference(ctx.trie, batch, logits, 4.5))
    assert obj.normaliser(batch.target_labels, batch.meta).item() == batch.target_labels.numel()


def test_msl_target_off_the_trie_raises(byte_tok):
    ctx = make_ctx(byte_tok, tiny.tiny_llama(len(byte_tok)))
    ctx.trie = build_trie(ctx.builder, TITLES, [0, 1])
    with pytest.raises(RecbiasError, match="does not walk the decoding trie"):
        MSLObjective().setup(ctx)


@pytest.mark.parametrize("key", ["tau", "ats_initial_tau"])
@pytest.mark.parametrize("value", [0.0, -1.0])
def test_msl_nonpositive_temperature_rejected_at_load(key, value):
    with pytest.raises(ConfigError, match=rf"train\.objective\.msl\.{key}"):
        from_dict(TrainConfig, {"objective": {"name": "msl", "msl": {key: value}}}, "train")


def test_ats_adapts_tau_within_its_clamp(byte_tok, tmp_path):
    cfg = MSLConfig(ats=True, ats_eta=1.0, ats_ema=0.5, ats_min_tau=0.05)
    _, rows = train(byte_tok, tmp_path, 2, 2, ObjectiveConfig(name="msl", msl=cfg))
    taus = [r["msl_tau"] for r in rows if r["event"] == "train"]
    assert taus[0] == pytest.approx(1.5)
    assert len(set(taus)) > 1 and all(0.05 <= t <= 5.0 for t in taus)


# --- Pos ------------------------------------------------------------------------------------


def test_positional_weights_by_hand():
    pos, length = torch.tensor([0, 1, 2, 3, 4, 0]), torch.tensor([5, 5, 5, 5, 5, 1])
    w = positional_weights(pos, length, 0.25)
    torch.testing.assert_close(w, torch.tensor([1.0, 0.8125, 0.625, 0.4375, 0.25, 1.0]))


@pytest.mark.parametrize("name,key", [("pos", "beta"), ("cft", "beta")])
@pytest.mark.parametrize("value", [-0.5, 1.01])
def test_beta_outside_unit_interval_rejected_at_load(name, key, value):
    with pytest.raises(ConfigError, match=rf"train\.objective\.{name}\.{key}"):
        from_dict(TrainConfig, {"objective": {"name": name, name: {key: value}}}, "train")


# --- neutral settings are SFT ---------------------------------------------------------------

NEUTRAL = {
    "pos": ObjectiveConfig(name="pos", pos=PosConfig(beta=1.0)),
    "cft": ObjectiveConfig(name="cft", cft=CFTConfig(alpha=0.0, beta=1.0)),
    "reweight": ObjectiveConfig(name="reweight", reweight=ReweightConfig(gamma=0.0)),
}


@pytest.mark.parametrize("name", ["pos", "cft", "reweight"])
def test_neutral_settings_reduce_to_sft(byte_tok, name):
    model = tiny.tiny_llama(len(byte_tok), seed=1)
    ctx = make_ctx(byte_tok, model)
    obj = build_objective(NEUTRAL[name])
    obj.setup(ctx)
    batch = collate(ctx.samples[:5], byte_tok.pad_token_id)
    loss_a, grads_a = loss_and_grads(model, build_objective(ObjectiveConfig()), batch)
    loss_b, grads_b = loss_and_grads(model, obj, batch)
    torch.testing.assert_close(loss_b, loss_a, atol=1e-6, rtol=1e-6)
    for ga, gb in zip(grads_a, grads_b, strict=True):
        torch.testing.assert_close(gb, ga, atol=1e-7, rtol=1e-5)


# --- CFT ------------------------------------------------------------------------------------


def _cft_reference(model, ctx, samples, alpha, beta, detach):
    full = collate(samples, ctx.pad_id)
    twins = [
        TokenizedSample(
            s.sample_id, s.target_item, ctx.builder.encode([], None, TITLES[s.target_item])
        )
        for s in samples
    ]
    empty = collate(twins, ctx.pad_id)
    z = target_logits(model, full)
    z_cf = target_logits(model, empty)
    z_cf = z_cf.detach() if detach else z_cf
    w = positional_weights(full.meta["position"], full.meta["target_length"], beta)
    y = full.target_labels
    ce = F.cross_entropy(z, y, reduction="none")
    ce_cf = F.cross_entropy(z - z_cf, y, reduction="none")
    return (w * ce).sum() / w.sum() + alpha * (w * ce_cf).sum() / w.sum()


@pytest.mark.parametrize("detach", [False, True])
def test_cft_matches_two_pass_reference(byte_tok, detach):
    model = tiny.tiny_llama(len(byte_tok), seed=1)
    ctx = make_ctx(byte_tok, model)
    obj = CFTObjective(CFTConfig(alpha=0.3, beta=0.25, detach_counterfactual=detach))
    obj.setup(ctx)
    samples = ctx.samples[2:6]
    loss, grads = loss_and_grads(model, obj, collate(samples, byte_tok.pad_token_id))
    model.zero_grad(set_to_none=True)
    ref = _cft_reference(model, ctx, samples, 0.3, 0.25, detach)
    ref.backward()
    torch.testing.assert_close(loss, ref.detach(), atol=1e-6, rtol=1e-6)
    for p, g in zip(model.parameters(), grads, strict=True):
        torch.testing.assert_close(g, p.grad, atol=1e-7, rtol=1e-5)


def test_cft_configurable_placeholder_text(byte_tok):
    ctx = make_ctx(byte_tok, tiny.tiny_llama(len(byte_tok)))
    obj = CFTObjective(CFTConfig(no_history_text="Unknow"))
    obj.setup(ctx)
    batch = collate(ctx.samples[:2], byte_tok.pad_token_id)
    obj.prepare(batch)
    text = byte_tok.decode(batch.meta["cft_input_ids"][0])
    assert "Unknow" in text and "N/A" not in text and TITLES[0] not in text.split("Response")[0]


def test_cft_negative_alpha_rejected_at_load():
    with pytest.raises(ConfigError, match=r"train\.objective\.cft\.alpha"):
        from_dict(TrainConfig, {"objective": {"name": "cft", "cft": {"alpha": -0.1}}}, "train")


# --- Reweight -------------------------------------------------------------------------------


def test_reweight_weights_every_token_by_inverse_popularity(byte_tok):
    ctx = make_ctx(byte_tok, tiny.tiny_llama(len(byte_tok)))
    obj = ReweightObjective(ReweightConfig(gamma=1.0))
    obj.setup(ctx)
    samples = ctx.samples[:4]
    batch = collate(samples, byte_tok.pad_token_id)
    obj.prepare(batch)
    expected = [1.0 / ctx.item_counts[s.target_item] for s in samples for _ in s.prompt.target_ids]
    torch.testing.assert_close(batch.meta["reweight_weight"], torch.tensor(expected).float())


def test_reweight_negative_gamma_rejected_at_load():
    with pytest.raises(ConfigError, match=r"train\.objective\.reweight\.gamma"):
        from_dict(
            TrainConfig, {"objective": {"name": "reweight", "reweight": {"gamma": -1.0}}}, "train"
        )


def test_reweight_target_without_count_raises(byte_tok):
    ctx = make_ctx(byte_tok, tiny.tiny_llama(len(byte_tok)))
    counts = ctx.item_counts.copy()
    counts[ctx.samples[0].target_item] = 0
    ctx.item_counts = counts
    with pytest.raises(RecbiasError, match=f"sample {ctx.samples[0].sample_id}"):
        ReweightObjective().setup(ctx)


# --- every objective: accumulation invariance and a short training run -----------------------

TRAINED = {
    "igd": ObjectiveConfig(name="igd", igd=IGDConfig(beta=0.1)),
    "msl": ObjectiveConfig(name="msl"),
    "msl_ats": ObjectiveConfig(
        name="msl", msl=MSLConfig(ats=True, ats_eta=1.0, ats_ema=0.5, ats_min_tau=0.05)
    ),
    "pos": ObjectiveConfig(name="pos"),
    "cft": ObjectiveConfig(name="cft", cft=CFTConfig(alpha=0.3)),
    "reweight": ObjectiveConfig(name="reweight"),
}


@pytest.mark.parametrize("name", sorted(TRAINED))
def test_accumulation_invariance_and_training(byte_tok, tmp_path, name):
    objective = TRAINED[name]
    a, rows = train(byte_tok, tmp_path / "a", 4, 1, objective)
    b, _ = train(byte_tok, tmp_path / "b", 1, 4, objective)
    c, _ = train(byte_tok, tmp_path / "c", 2, 2, objective)
    for pa, pb, pc in zip(a.parameters(), b.parameters(), c.parameters(), strict=True):
        torch.testing.assert_close(pa, pb, atol=2e-5, rtol=1e-4)
        torch.testing.assert_close(pa, pc, atol=2e-5, rtol=1e-4)
    init = tiny.tiny_llama(len(byte_tok), seed=1)
    assert any(
        not torch.equal(p, q) for p, q in zip(a.parameters(), init.parameters(), strict=True)
    )
    losses = [r["loss"] for r in rows if r["event"] == "train"]
    assert losses and all(math.isfinite(x) for x in losses)
