from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F

import tiny
from objective_helpers import tiny_train_config
from recbias.config import from_dict
from recbias.errors import ConfigError, RecbiasError
from recbias.llmrec import build_trie
from recbias.lm.batching import collate, encode_samples
from recbias.lm.forward import target_logits
from recbias.objectives import ObjectiveConfig, build_objective
from recbias.objectives.base import ObjectiveContext
from recbias.objectives.gdrt import GDRTConfig, GDRTObjective, group_weights, token_weights
from recbias.objectives.relevance import (
    TokenRelevance,
    relevance_groups,
    token_relevance,
)
from recbias.train.loop import Trainer

TITLES = tiny.MOVIES


def _frame(n=12, seed=0):
    g = torch.Generator().manual_seed(seed)
    rows = []
    for i in range(n):
        size = int(torch.randint(1, 5, (1,), generator=g))
        hist = torch.randint(0, len(TITLES), (size,), generator=g).tolist()
        rows.append({"sample_id": i, "user": f"u{i}", "history": hist, "target": (i * 3) % 8})
    return pd.DataFrame(rows)


def _context(tok, model, frame=None, dtype="fp32"):
    frame = _frame() if frame is None else frame
    builder = tiny.movie_builder(tok)
    samples = encode_samples(builder, frame, TITLES, max_length=512)
    counts = np.bincount(frame["target"], minlength=len(TITLES))
    trie = build_trie(builder, TITLES, range(len(TITLES)))
    return ObjectiveContext(
        model, builder, TITLES, frame, samples, counts, trie, dtype, tok.pad_token_id
    )


def _gdrt(ctx, **kw):
    obj = GDRTObjective(GDRTConfig(**kw))
    obj.setup(ctx)
    return obj


def _loss_and_grads(model, obj, batch):
    model.zero_grad()
    obj.prepare(batch)
    norm = obj.normaliser(batch.target_labels, batch.meta)
    loss = obj(target_logits(model, batch), batch.target_labels, batch.meta) / norm
    loss.backward()
    return loss.detach(), [p.grad.clone() for p in model.parameters()]


# -- Eq. 5 weights ---------------------------------------------------------------------------------
def test_weights_match_hand_computation():
    # Q = exp(L/τ) / Σ exp(L/τ) with L = [0.5, 1.2, 2.0], τ = 0.5: exp([1, 2.4, 4]) / 68.3396...
    q = group_weights(torch.tensor([0.5, 1.2, 2.0]), torch.tensor([True] * 3), tau=0.5)
    expected = torch.tensor([0.03977608151957051, 0.16129996445937342, 0.7989239540210561])
    torch.testing.assert_close(q, expected)
    # and Σ Q(g)L(g) = 1.81129590615...
    assert float((q * torch.tensor([0.5, 1.2, 2.0])).sum()) == pytest.approx(1.8112959061531455)


def test_absent_groups_get_zero_weight_and_softmax_over_present():
    losses = torch.tensor([0.5, float("nan"), 2.0])
    present = torch.tensor([True, False, True])
    q = group_weights(losses, present, tau=0.5)  # softmax([1, 4]) on groups 0 and 2
    torch.testing.assert_close(q, torch.tensor([0.04742587317756678, 0.0, 0.9525741268224331]))
    w = token_weights(q, torch.tensor([3.0, 0.0, 1.0]))  # Q(g)·N/n_g, N = 4
    torch.testing.assert_close(w, torch.tensor([0.04742587317756678 * 4 / 3, 0.0, 3.8102965]))


def test_token_weights_give_the_group_dro_loss():
    g = torch.Generator().manual_seed(0)
    ce = torch.rand(20, generator=g) * 3
    group = torch.randint(0, 4, (20,), generator=g)
    group[:4] = torch.arange(4)
    counts = torch.bincount(group, minlength=4).float()
    losses = torch.stack([ce[group == k].mean() for k in range(4)])
    q = group_weights(losses, counts > 0, tau=0.3)
    ours = (token_weights(q, counts)[group] * ce).sum() / 20
    torch.testing.assert_close(ours, (q * losses).sum())


def test_tiny_tau_stays_finite(byte_tok):
    model = tiny.tiny_llama(len(byte_tok), seed=1)
    ctx = _context(byte_tok, model)
    obj = _gdrt(ctx, groups=3, tau=0.01)
    loss, grads = _loss_and_grads(model, obj, collate(ctx.samples[:6], byte_tok.pad_token_id))
    assert torch.isfinite(loss)
    assert all(bool(torch.isfinite(gr).all()) for gr in grads)
    assert float(obj.stats()["gdrt_group_weight"].max()) > 0.99  # nearly all on the worst group


def test_one_group_is_exactly_sft(byte_tok):
    model = tiny.tiny_llama(len(byte_tok), seed=1)
    ctx = _context(byte_tok, model)
    batch = collate(ctx.samples[:6], byte_tok.pad_token_id)
    ours, ours_grad = _loss_and_grads(model, _gdrt(ctx, groups=1), batch)
    sft, sft_grad = _loss_and_grads(model, build_objective(ObjectiveConfig()), batch)
    torch.testing.assert_close(ours, sft, rtol=1e-6, atol=0)
    for a, b in zip(ours_grad, sft_grad, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-9)


def test_loss_equals_group_dro_on_the_batch(byte_tok):
    model = tiny.tiny_llama(len(byte_tok), seed=1)
    ctx = _context(byte_tok, model)
    obj = _gdrt(ctx, groups=3, tau=0.3)
    batch = collate(ctx.samples[:6], byte_tok.pad_token_id)
    loss, _ = _loss_and_grads(model, obj, batch)
    with torch.no_grad():
        ce = F.cross_entropy(target_logits(model, batch), batch.target_labels, reduction="none")
    group = batch.meta["gdrt_group"]
    present = [k for k in range(3) if bool((group == k).any())]
    losses = torch.tensor([ce[group == k].mean() for k in present])
    q = torch.softmax(losses / 0.3, 0)  # the plain reference: Eq. 5 on the present groups
    torch.testing.assert_close(loss, (q * losses).sum(), rtol=1e-5, atol=1e-6)
    stats = obj.stats()
    torch.testing.assert_close(stats["gdrt_group_weight"][present], q, rtol=1e-5, atol=1e-7)
    assert stats["gdrt_group_tokens"].sum() == batch.target_labels.numel()


# -- accumulation ----------------------------------------------------------------------------------
def _train(tok, tmp_path, mbs, accum, epochs=1, logger=None, **kw):
    model = tiny.tiny_llama(len(tok), seed=1)
    ctx = _context(tok, model)
    obj = _gdrt(ctx, groups=3, **kw)
    cfg = tiny_train_config(mbs, accum, epochs=epochs)
    trainer = Trainer(
        model, obj, cfg, tmp_path, tok.pad_token_id, seed=0, dtype="fp32", logger=logger
    )
    trainer.fit(ctx.samples, validate=None)
    return trainer


def _accumulated_step(model, obj, samples, splits, pad_id):
    """One optimiser step's gradient, following the trainer's protocol for a micro-batch split."""
    model.zero_grad()
    batches = [collate(samples[a:b], pad_id) for a, b in splits]
    for b in batches:
        obj.prepare(b)
    total = sum(obj.normaliser(b.target_labels, b.meta) for b in batches)
    loss = 0.0
    for b in batches:
        num = obj(target_logits(model, b), b.target_labels, b.meta)
        (num / total).backward()
        loss += float(num.detach() / total)
    return loss, [p.grad.clone() for p in model.parameters()]


@pytest.mark.parametrize(
    "kw",
    [{}, {"weights_from": "previous", "ema": 0.5}],
    ids=["default-batch", "previous-ema"],
)
def test_accumulation_gives_the_effective_batch_gradient(byte_tok, kw):
    model = tiny.tiny_llama(len(byte_tok), seed=1)
    ctx = _context(byte_tok, model)
    pad = byte_tok.pad_token_id
    splits = {"4x1": [(0, 4)], "1x4": [(0, 1), (1, 2), (2, 3), (3, 4)], "2x2": [(0, 2), (2, 4)]}
    results = {}
    for name, split in splits.items():
        obj = _gdrt(ctx, groups=3, **kw)
        _accumulated_step(model, obj, ctx.samples[4:8], [(0, 4)], pad)  # a first step ("previous")
        results[name] = _accumulated_step(model, obj, ctx.samples[:4], split, pad)
    loss, grads = results["4x1"]
    for name in ("1x4", "2x2"):
        assert results[name][0] == pytest.approx(loss, rel=1e-6)
        for a, b in zip(grads, results[name][1], strict=True):
            torch.testing.assert_close(
                b, a, rtol=1e-4, atol=1e-7, msg=lambda m, n=name: f"{n}: {m}"
            )


@pytest.mark.parametrize(
    "kw",
    [{}, {"weights_from": "previous", "ema": 0.5}],
    ids=["default-batch", "previous-ema"],
)
def test_accumulation_does_not_change_training(byte_tok, tmp_path, kw):
    a = _train(byte_tok, tmp_path / "a", mbs=4, accum=1, **kw)
    b = _train(byte_tok, tmp_path / "b", mbs=1, accum=4, **kw)
    c = _train(byte_tok, tmp_path / "c", mbs=2, accum=2, **kw)
    # Adam turns float rounding of near-zero gradients (an unused embedding row) into ~1e-5 moves.
    for (name, pa), pb, pc in zip(
        a.model.named_parameters(), b.model.parameters(), c.model.parameters(), strict=True
    ):
        torch.testing.assert_close(pa, pb, atol=1e-4, rtol=1e-4, msg=name)
        torch.testing.assert_close(pa, pc, atol=1e-4, rtol=1e-4, msg=name)


def _reference_q(model, ctx, samples, tau):
    """Plain Eq. 5 on ``samples`` run as one micro-batch: (Q over the present groups, present)."""
    batch = collate(samples, ctx.pad_id)
    _gdrt(ctx, groups=3).prepare(batch)  # only for the groups (the same K-means groups)
    group = batch.meta["gdrt_group"]
    with torch.no_grad():
        ce = F.cross_entropy(target_logits(model, batch), batch.target_labels, reduction="none")
    present = [k for k in range(3) if bool((group == k).any())]
    losses = torch.tensor([ce[group == k].mean() for k in present])
    return torch.softmax(losses / tau, 0), present


def test_default_q_under_accumulation_is_the_one_micro_batch_q(byte_tok):
    model = tiny.tiny_llama(len(byte_tok), seed=1)
    ctx = _context(byte_tok, model)
    assert GDRTConfig().weights_from == "batch"
    want, present = _reference_q(model, ctx, ctx.samples[:6], tau=0.5)
    assert float(want.max() - want.min()) > 0.01  # not uniform: the lagged Q would be
    obj = _gdrt(ctx, groups=3)  # the first step: no previous step to lag behind
    _accumulated_step(model, obj, ctx.samples[:6], [(0, 2), (2, 4), (4, 6)], byte_tok.pad_token_id)
    torch.testing.assert_close(obj.stats()["gdrt_group_weight"][present], want, rtol=1e-5, atol=0)


def test_lagged_q_is_uniform_first_then_the_previous_steps(byte_tok):
    model = tiny.tiny_llama(len(byte_tok), seed=1)
    ctx = _context(byte_tok, model)
    pad = byte_tok.pad_token_id
    obj = _gdrt(ctx, groups=3, weights_from="previous")
    first, present = _reference_q(model, ctx, ctx.samples[:6], tau=0.5)
    _accumulated_step(model, obj, ctx.samples[:6], [(0, 2), (2, 4), (4, 6)], pad)
    q = obj.stats()["gdrt_group_weight"][present]
    torch.testing.assert_close(q, torch.full_like(q, 1 / len(present)))
    second, now = _reference_q(model, ctx, ctx.samples[6:12], tau=0.5)  # the weights did not move
    assert now == present  # every group is in both steps, so Q is softmax of step 1's losses
    _accumulated_step(model, obj, ctx.samples[6:12], [(0, 3), (3, 6)], pad)
    got = obj.stats()["gdrt_group_weight"][present]
    torch.testing.assert_close(got, first, rtol=1e-5, atol=0)
    assert not torch.allclose(got, second)


def test_auto_takes_q_from_the_batch_for_one_micro_batch_else_from_the_previous_step(byte_tok):
    model = tiny.tiny_llama(len(byte_tok), seed=1)
    ctx = _context(byte_tok, model)
    pad = byte_tok.pad_token_id
    for split, same_as in (([(0, 4)], "batch"), ([(0, 2), (2, 4)], "previous")):
        got = {}
        for mode in ("auto", same_as):
            obj = _gdrt(ctx, groups=3, weights_from=mode)
            _accumulated_step(model, obj, ctx.samples[4:8], [(0, 4)], pad)
            got[mode] = _accumulated_step(model, obj, ctx.samples[:4], split, pad)
        assert got["auto"][0] == got[same_as][0]
        for a, b in zip(got["auto"][1], got[same_as][1], strict=True):
            torch.testing.assert_close(a, b, rtol=0, atol=0)


class _Logs:
    def __init__(self):
        self.records = []

    def log(self, record):
        self.records.append(record)

    def close(self):
        return None


def test_trainer_end_to_end_lowers_the_loss_and_logs_groups(byte_tok, tmp_path):
    logs = _Logs()
    _train(byte_tok, tmp_path, mbs=2, accum=2, epochs=4, logger=logs)
    train = [r for r in logs.records if r["event"] == "train"]
    assert train[-1]["loss"] < train[0]["loss"]
    assert len(train[0]["gdrt_group_weight"]) == 3
    assert sum(train[0]["gdrt_group_weight"]) == pytest.approx(1.0)
    assert sum(train[0]["gdrt_group_tokens"]) > 0


def test_refresh_recomputes_relevance_each_epoch(byte_tok, tmp_path, monkeypatch):
    import recbias.objectives.gdrt as gdrt

    calls = []
    real = gdrt.token_relevance

    def spy(model, *args, **kw):
        calls.append(model.training)
        return real(model, *args, **kw)

    monkeypatch.setattr(gdrt, "token_relevance", spy)
    _train(byte_tok, tmp_path, mbs=4, accum=1, epochs=3, relevance_model="refresh")
    assert len(calls) == 3  # setup (initial model) + epochs 1 and 2
    calls.clear()
    _train(byte_tok, tmp_path / "i", mbs=4, accum=1, epochs=3)
    assert len(calls) == 1


def test_explicit_begin_step_and_unprepared_batch(byte_tok):
    model = tiny.tiny_llama(len(byte_tok), seed=1)
    ctx = _context(byte_tok, model)
    obj = _gdrt(ctx, groups=2)
    a = collate(ctx.samples[:2], byte_tok.pad_token_id)
    b = collate(ctx.samples[2:4], byte_tok.pad_token_id)
    obj.begin_step()
    obj.prepare(a)
    obj.normaliser(a.target_labels, a.meta)
    with pytest.raises(RecbiasError, match="not prepared"):
        obj(target_logits(model, b), b.target_labels, b.meta | {"gdrt_group": a.meta["gdrt_group"]})


# -- relevance and grouping ------------------------------------------------------------------------
def _reference_relevance(model, builder, title):
    enc = builder.encode([], None, title)
    ids = torch.tensor([enc.full_ids])
    with torch.no_grad():
        logp = torch.log_softmax(model(input_ids=ids).logits[0].float(), dim=-1)
    start = len(enc.input_ids)
    pos = torch.arange(start - 1, start - 1 + len(enc.target_ids))
    return logp[pos, torch.tensor(enc.target_ids)].double().numpy()


@pytest.mark.parametrize("placeholder", ["N/A", "nothing"])
def test_relevance_equals_one_sample_at_a_time(any_tok, placeholder):
    model = tiny.tiny_llama(len(any_tok), seed=2)
    ctx = _context(any_tok, model)
    override = None if placeholder == "N/A" else placeholder
    rel = token_relevance(
        model, ctx.builder, ctx.samples, "fp32", batch_size=3, placeholder=override
    )
    ref_builder = tiny.movie_builder(any_tok, history_placeholder=placeholder)
    row = {int(i): k for k, i in enumerate(rel.items)}
    for s in ctx.samples:  # every sample's tokens, against a plain full forward of its own
        ref = _reference_relevance(model, ref_builder, TITLES[s.target_item])
        ours = rel.values[row[s.target_item]]
        np.testing.assert_allclose(ours[: len(ref)], ref, atol=1e-5)
        assert np.isnan(ours[len(ref) :]).all()
    assert rel.counts.sum() == len(ctx.samples)
    assert sorted(rel.items.tolist()) == sorted(set(ctx.train["target"].tolist()))


def _hand_relevance(counts):
    nan = np.nan
    values = np.array([[-0.1, -0.2, nan], [-5.0, -5.1, -0.15], [-2.0, nan, nan]])
    return TokenRelevance(np.array([4, 0, 7]), values, np.array(counts))


def test_kmeans_groups_by_relevance_level_highest_first():
    groups = relevance_groups(_hand_relevance([1, 1, 1]), 3, "kmeans", seed=0)
    assert groups.tolist() == [[0, 0, -1], [2, 2, 0], [1, -1, -1]]


def test_quantile_groups_are_equal_frequency_and_weighted():
    # r sorted: -0.1, -0.15, -0.2, -2.0, -5.0, -5.1 -> two tokens per bin
    groups = relevance_groups(_hand_relevance([1, 1, 1]), 3, "quantile")
    assert groups.tolist() == [[0, 1, -1], [2, 2, 0], [1, -1, -1]]
    # item 4 appears in 4 samples: weights 4,1,4,1,1,1 of 12 -> cut points at 4 and 8 tokens
    groups = relevance_groups(_hand_relevance([4, 1, 1]), 3, "quantile")
    assert groups.tolist() == [[0, 1, -1], [2, 2, 1], [2, -1, -1]]


def test_too_many_groups_names_the_key():
    with pytest.raises(RecbiasError, match=r"train\.objective\.gdrt\.groups"):
        relevance_groups(_hand_relevance([1, 1, 1]), 7, "kmeans")


@pytest.mark.parametrize(
    ("change", "key"),
    [
        ({"tau": 0.0}, "tau"),
        ({"tau": -1.0}, "tau"),
        ({"grouping": "spectral"}, "grouping"),
        ({"groups": 0}, "groups"),
        ({"ema": 1.5}, "ema"),
    ],
)
def test_invalid_config_is_rejected_naming_the_key(change, key):
    with pytest.raises(ConfigError, match=rf"train\.objective\.gdrt\.{key}"):
        GDRTConfig(**change).validate("train.objective.gdrt")


def test_config_loader_validates_gdrt():
    cfg = from_dict(ObjectiveConfig, {"name": "gdrt", "gdrt": {"groups": 2, "tau": 0.2}})
    assert isinstance(build_objective(cfg), GDRTObjective)
    with pytest.raises(ConfigError, match=r"gdrt\.tau"):
        from_dict(ObjectiveConfig, {"name": "gdrt", "gdrt": {"tau": 0}})
