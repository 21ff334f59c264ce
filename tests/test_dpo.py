"""DPO / S-DPO: the loss against independent formulas and TRL, sequence log-probs, one step."""

from __future__ import annotations

import math
from types import SimpleNamespace

import pandas as pd
import pytest
import torch
import torch.nn.functional as F

import tiny
from recbias.lm.batching import encode_samples
from recbias.lm.forward import target_logits
from recbias.objectives.dpo import (
    DPOConfig,
    DPOObjective,
    PreferenceSample,
    collate_preferences,
    preference_loss,
    reference_logps,
    sequence_logps,
    with_target,
)
from recbias.train.loop import TrainConfig, Trainer

TITLES = tiny.MOVIES


def _logsig(x: float) -> float:
    return -math.log1p(math.exp(-x)) if x > 0 else x - math.log1p(math.exp(x))


def _plain_loss(row, ref, beta, eps, kind, ref_free=False):
    """One prompt's loss written out with math floats (row/ref: chosen first, then rejected)."""
    r = [b - (0.0 if ref_free else a) for b, a in zip(row, ref, strict=True)]
    z = math.log(sum(math.exp(beta * (rj - r[0])) for rj in r[1:]))
    if kind == "robust":
        return (-(1 - eps) * _logsig(-z) + eps * _logsig(z)) / (1 - 2 * eps)
    return -(1 - eps) * _logsig(-z) - eps * _logsig(z)


@pytest.mark.parametrize("k", [1, 3])
@pytest.mark.parametrize(
    "cfg",
    [
        DPOConfig(beta=0.1),
        DPOConfig(beta=0.5, label_smoothing=0.2),
        DPOConfig(beta=2.0, loss_type="robust", label_smoothing=0.1),
        DPOConfig(beta=0.3, reference_free=True),
    ],
)
def test_loss_equals_the_written_out_formula(cfg, k):
    g = torch.Generator().manual_seed(k)
    logps = -10 * torch.rand(16, 1 + k, generator=g, dtype=torch.float64)
    ref = -10 * torch.rand(16, 1 + k, generator=g, dtype=torch.float64)
    loss, rewards = preference_loss(logps, ref, cfg)
    expected = [
        _plain_loss(a, b, cfg.beta, cfg.label_smoothing, cfg.loss_type, cfg.reference_free)
        for a, b in zip(logps.tolist(), ref.tolist(), strict=True)
    ]
    assert loss.tolist() == pytest.approx(expected, abs=1e-9)
    base = 0 if cfg.reference_free else ref
    torch.testing.assert_close(rewards, cfg.beta * (logps - base))


def test_sdpo_with_one_rejected_item_is_dpo():
    g = torch.Generator().manual_seed(0)
    pc, pr, rc, rr = (-5 * torch.rand(32, generator=g, dtype=torch.float64) for _ in range(4))
    beta = 0.7
    dpo = -F.logsigmoid(beta * ((pc - rc) - (pr - rr)))
    # S-DPO as written in its paper: -log σ(-log Σ_j exp(β (r_j - r_w))), here with one j.
    sdpo = -F.logsigmoid(-torch.log(torch.exp(beta * ((pr - rr) - (pc - rc)))))
    ours, _ = preference_loss(torch.stack([pc, pr], 1), torch.stack([rc, rr], 1), DPOConfig(beta))
    torch.testing.assert_close(ours, dpo, rtol=0, atol=1e-12)
    torch.testing.assert_close(sdpo, dpo, rtol=0, atol=1e-12)


def test_sdpo_penalises_every_rejected_item():
    """Raising any rejected item's log-ratio raises the S-DPO loss; the chosen one lowers it."""
    logps = torch.tensor([[-2.0, -3.0, -4.0, -5.0]], requires_grad=True)
    loss, _ = preference_loss(logps, torch.full((1, 4), -3.0), DPOConfig(beta=0.5))
    loss.sum().backward()
    assert logps.grad[0, 0] < 0 and (logps.grad[0, 1:] > 0).all()
    torch.testing.assert_close(logps.grad.sum(), torch.tensor(0.0))  # the softmax is shift-free


def test_sequence_logps_sum_each_rows_target_tokens():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(9, 11, generator=g)
    labels = torch.randint(0, 11, (9,), generator=g)
    rows = torch.tensor([0, 0, 0, 1, 1, 2, 2, 2, 2])
    lp = torch.log_softmax(logits, -1)
    expected = [sum(float(lp[t, labels[t]]) for t in range(9) if rows[t] == r) for r in range(3)]
    assert sequence_logps(logits, labels, rows, 3).tolist() == pytest.approx(expected, abs=1e-5)


# --------------------------------------------------------------------------------------------
# TRL's DPO trainer loss on the same random logits (TRL is a test-only dependency)


def _trl_compute_loss(logits, input_ids, completion_mask, ref_c, ref_r, beta, loss_type, eps):
    """TRL's ``DPOTrainer._compute_loss`` on a batch [chosen rows; rejected rows] whose model
    outputs are built from ``logits`` with TRL's own helpers."""
    trl_dpo = pytest.importorskip("trl.trainer.dpo_trainer")
    from trl.trainer.utils import entropy_from_logits, selective_log_softmax

    shift_logits, shift_labels = logits[:, :-1], input_ids[:, 1:]
    mask = completion_mask[:, 1:].bool()
    out = SimpleNamespace(
        log_probs=selective_log_softmax(shift_logits, shift_labels).masked_fill(~mask, 0),
        entropy=entropy_from_logits(shift_logits),
        mean_logits=shift_logits.mean(-1),
        is_top1=shift_logits.argmax(-1) == shift_labels,
        log_sum_sq_probs=None,
        aux_loss=None,
    )
    identity = lambda x: x  # noqa: E731 - one process: gathering is the identity
    fake = SimpleNamespace(
        model=SimpleNamespace(training=True),
        accelerator=SimpleNamespace(
            device=torch.device("cpu"), gather=identity, gather_for_metrics=identity
        ),
        aux_loss_enabled=False,
        ld_alpha=None,
        precompute_ref_logps=True,
        f_divergence_type="reverse_kl",
        loss_types=[loss_type],
        loss_weights=[1.0],
        beta=beta,
        label_smoothing=eps,
        use_weighting=False,
        _metrics={"train": __import__("collections").defaultdict(list)},
        _total_train_tokens=0,
        _tp_size=1,
        args=SimpleNamespace(),
    )
    inputs = {
        "input_ids": input_ids,
        "attention_mask": torch.ones_like(input_ids),
        "completion_mask": completion_mask,
        "ref_chosen_logps": ref_c,
        "ref_rejected_logps": ref_r,
    }
    loss = trl_dpo.DPOTrainer._compute_loss(fake, lambda **kw: out, inputs, False)
    return loss, {k: v[-1] for k, v in fake._metrics["train"].items()}


@pytest.mark.parametrize(
    ("beta", "loss_type", "eps"),
    [(0.1, "sigmoid", 0.0), (0.5, "sigmoid", 0.0), (0.3, "robust", 0.2)],
)
def test_loss_and_logged_metrics_equal_trls_dpo_on_random_logits(beta, loss_type, eps):
    pairs, seq, vocab = 6, 12, 50
    g = torch.Generator().manual_seed(1)
    logits = 3 * torch.randn(2 * pairs, seq, vocab, generator=g, dtype=torch.float64)
    input_ids = torch.randint(0, vocab, (2 * pairs, seq), generator=g)
    starts = torch.randint(3, 8, (2 * pairs,), generator=g)
    completion_mask = (torch.arange(seq)[None] >= starts[:, None]).long()
    ref = -30 * torch.rand(2 * pairs, generator=g, dtype=torch.float64)
    trl_loss, trl_metrics = _trl_compute_loss(
        logits, input_ids, completion_mask, ref[:pairs], ref[pairs:], beta, loss_type, eps
    )
    # Our side: rows prompt-major (chosen i, rejected i), logits only at supervised positions.
    order = torch.stack([torch.arange(pairs), torch.arange(pairs) + pairs], 1).flatten()
    mask = completion_mask[order, 1:].bool()
    meta = {
        "sample": mask.nonzero()[:, 0],
        "ref_logps": ref[order].view(pairs, 2),
    }
    obj = DPOObjective(DPOConfig(beta=beta, loss_type=loss_type, label_smoothing=eps))
    num = obj(logits[order, :-1][mask], input_ids[order, 1:][mask], meta)
    ours = num / obj.normaliser(None, meta)
    assert float(ours) == pytest.approx(float(trl_loss), abs=1e-6)
    stats = {k: float(v) for k, v in obj.stats().items()}
    for key in ("rewards/chosen", "rewards/rejected", "rewards/margins", "rewards/accuracies"):
        assert stats[key] == pytest.approx(trl_metrics[key], abs=1e-6), key
    for key in ("logps/chosen", "logps/rejected"):  # sums of ~10 fp32 log-probs of size ~5
        assert stats[key] == pytest.approx(trl_metrics[key], rel=1e-6), key


# --------------------------------------------------------------------------------------------
# On a tiny model


def _preferences(tok, n=6, k=1):
    rows = [
        {"sample_id": i, "history": [(i + 1) % 8, (i + 4) % 8], "target": i % 8} for i in range(n)
    ]
    builder = tiny.movie_builder(tok)
    chosen = encode_samples(builder, pd.DataFrame(rows), TITLES, max_length=512)
    out = []
    for s in chosen:
        rejected = [(s.target_item + 2 + j) % 8 for j in range(k)]
        out.append(PreferenceSample(s, [with_target(builder, s, r, TITLES[r]) for r in rejected]))
    return out


def test_rejected_rows_share_the_prompt_and_are_tokenised_as_targets(byte_tok):
    builder = tiny.movie_builder(byte_tok)
    (p,) = _preferences(byte_tok, n=1, k=2)
    for row in p.rejected:
        assert row.prompt.input_ids == p.chosen.prompt.input_ids
        direct = builder.encode([TITLES[1], TITLES[4]], [1, 4], TITLES[row.target_item])
        assert row.prompt.full_ids == direct.full_ids
        assert row.prompt.spans == direct.spans


def test_reference_logps_are_the_models_sequence_logps(byte_tok):
    model = tiny.tiny_llama(len(byte_tok), seed=2)
    samples = _preferences(byte_tok, n=3, k=2)
    reference_logps(model, samples, byte_tok.pad_token_id, batch_size=2)
    for s in samples:
        for row, ref in zip(s.rows, s.ref_logps, strict=True):
            ids = torch.tensor([row.prompt.full_ids])
            with torch.no_grad():
                logp = torch.log_softmax(model(input_ids=ids).logits[0, :-1], -1)
            n = len(row.prompt.input_ids)
            want = sum(float(logp[n - 1 + j, t]) for j, t in enumerate(row.prompt.target_ids))
            assert float(ref) == pytest.approx(want, abs=1e-4)


def _log_ratio_margin(model, samples, pad_id):
    batch = collate_preferences(samples, pad_id)
    with torch.no_grad():
        logits = target_logits(model, batch)
    ref = batch.meta["ref_logps"]
    seq = sequence_logps(logits, batch.target_labels, batch.meta["sample"], ref.numel())
    ratio = seq.view_as(ref) - ref
    return float((ratio[:, 0] - ratio[:, 1:].mean(1)).mean())


@pytest.mark.parametrize("k", [1, 2])
def test_one_step_raises_the_chosen_minus_rejected_log_ratio(byte_tok, tmp_path, k):
    model = tiny.tiny_llama(len(byte_tok), seed=2)
    samples = _preferences(byte_tok, n=6, k=k)
    pad = byte_tok.pad_token_id
    reference_logps(model, samples, pad)
    cfg = TrainConfig(epochs=1, lr=1e-2, warmup_steps=0, micro_batch_size=3, grad_accum=2)
    obj = DPOObjective(DPOConfig(beta=0.1))
    trainer = Trainer(model, obj, cfg, tmp_path, pad, seed=0, dtype="fp32",
                      collate_fn=collate_preferences)  # fmt: skip
    margins_before = [_log_ratio_margin(model, [s], pad) for s in samples]
    trainer.fit(samples, validate=None)
    assert trainer.state.step == 1
    # The step's loss was measured with policy = reference: -log σ(-log K) = log(1 + K).
    assert float(obj.stats()["dpo_loss"]) == pytest.approx(math.log(1 + k), abs=1e-5)
    assert margins_before == pytest.approx([0.0] * 6, abs=1e-5)
    assert _log_ratio_margin(model, samples, pad) > 1e-3


def test_a_batch_mixing_numbers_of_rejected_rows_is_refused(byte_tok):
    a, b = _preferences(byte_tok, n=1, k=1)[0], _preferences(byte_tok, n=1, k=2)[0]
    with pytest.raises(ValueError, match="mixes numbers of rejected rows"):
        collate_preferences([a, b], byte_tok.pad_token_id)
