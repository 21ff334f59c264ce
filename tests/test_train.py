from __future__ import annotations

import pandas as pd
import pytest
import torch
import torch.nn.functional as F

import tiny
from recbias.lm.batching import bucketed_batches, collate, encode_samples, split_micro_batches
from recbias.lm.forward import shared_prefix_length, target_logits
from recbias.objectives import ObjectiveConfig, build_objective
from recbias.train.loop import TrainConfig, Trainer

TITLES = tiny.MOVIES


def _samples(tok, n=12, seed=0):
    g = torch.Generator().manual_seed(seed)
    rows = []
    for i in range(n):
        hist = torch.randint(
            0, len(TITLES), (int(torch.randint(1, 5, (1,), generator=g)),), generator=g
        )
        rows.append({"sample_id": i, "history": hist.tolist(), "target": (i * 3) % len(TITLES)})
    builder = tiny.movie_builder(tok)
    return encode_samples(builder, pd.DataFrame(rows), TITLES, max_length=512)


def _train(tok, tmp_path, mbs, accum, epochs=1, seed=0, **kw):
    model = tiny.tiny_llama(len(tok), seed=1)
    cfg = TrainConfig(
        compile=kw.pop("compile", False),
        micro_batch_tokens=kw.pop("micro_batch_tokens", 0),
        epochs=epochs,
        lr=1e-2,
        warmup_steps=0,
        micro_batch_size=mbs,
        grad_accum=accum,
        max_grad_norm=0.0,
        checkpoint_every=kw.pop("every", 0),
    )
    trainer = Trainer(
        model,
        build_objective(ObjectiveConfig()),
        cfg,
        tmp_path,
        tok.pad_token_id,
        seed=seed,
        dtype="fp32",
    )
    trainer.fit(_samples(tok), validate=None, **kw)
    return trainer


def test_target_logits_match_full_forward(byte_tok):
    model = tiny.tiny_llama(len(byte_tok))
    batch = collate(_samples(byte_tok)[:4], byte_tok.pad_token_id)
    full = model(input_ids=batch.input_ids, attention_mask=batch.attention_mask).logits
    expected = full[:, :-1][batch.target_mask]
    torch.testing.assert_close(target_logits(model, batch), expected, atol=1e-5, rtol=1e-5)


def test_shared_prefix_is_the_rows_common_start_and_ends_before_any_target(any_tok):
    samples = _samples(any_tok)[:4]
    batch = collate(samples, any_tok.pad_token_id)
    n = shared_prefix_length(batch)
    ids = [s.prompt.input_ids for s in samples]
    common = 0
    while all(len(i) > common and i[common] == ids[0][common] for i in ids):
        common += 1
    assert n == min(common, min(len(i) for i in ids) - 1)
    assert n >= 8  # the task description
    assert shared_prefix_length(collate(samples[:1], any_tok.pad_token_id)) == 0


@pytest.mark.parametrize("n_rows", [2, 5])
def test_shared_prefix_forward_gives_the_plain_logits_and_gradients(any_tok, n_rows):
    model = tiny.tiny_llama(len(any_tok))
    batch = collate(_samples(any_tok, seed=3)[:n_rows], any_tok.pad_token_id)
    results = []
    for share in (False, True):
        model.zero_grad()
        logits = target_logits(model, batch, share_prefix=share)
        F.cross_entropy(logits, batch.target_labels).backward()
        results.append((logits.detach(), [p.grad.clone() for p in model.parameters()]))
    (plain, g_plain), (shared, g_shared) = results
    torch.testing.assert_close(shared, plain, atol=1e-5, rtol=1e-5)
    for a, b in zip(g_plain, g_shared, strict=True):
        torch.testing.assert_close(b, a, atol=1e-6, rtol=1e-4)


@pytest.mark.parametrize("share", [False, True])
def test_right_padded_batches_run_without_the_mask_and_give_the_masked_results(any_tok, share):
    model = tiny.tiny_llama(len(any_tok))
    batch = collate(_samples(any_tok, seed=5)[:5], any_tok.pad_token_id)
    assert batch.right_padded and not bool(batch.attention_mask.all())  # there is padding
    seen = []
    hook = model.model.register_forward_pre_hook(
        lambda _m, _a, kw: seen.append(kw.get("attention_mask")), with_kwargs=True
    )
    results = []
    for right in (False, True):  # False: the mask is passed
        batch.right_padded = right
        seen.append(right)
        model.zero_grad()
        logits = target_logits(model, batch, share_prefix=share)
        F.cross_entropy(logits, batch.target_labels).backward()
        results.append((logits.detach(), [p.grad.clone() for p in model.parameters()]))
    hook.remove()
    split = next(i for i, m in enumerate(seen) if m is True)
    assert any(isinstance(m, torch.Tensor) for m in seen[1:split])
    assert all(m is None for m in seen[split + 1 :])
    (masked, g_masked), (free, g_free) = results
    torch.testing.assert_close(free, masked, atol=1e-5, rtol=1e-5)
    for a, b in zip(g_masked, g_free, strict=True):
        torch.testing.assert_close(b, a, atol=1e-6, rtol=1e-4)


def test_sft_loss_equals_plain_cross_entropy_on_targets(byte_tok):
    batch = collate(_samples(byte_tok)[:4], byte_tok.pad_token_id)
    model = tiny.tiny_llama(len(byte_tok))
    logits = model(input_ids=batch.input_ids, attention_mask=batch.attention_mask).logits
    ref = F.cross_entropy(logits[:, :-1].transpose(1, 2), batch.labels[:, 1:], ignore_index=-100)
    obj = build_objective(ObjectiveConfig())
    tl = target_logits(model, batch)
    ours = obj(tl, batch.target_labels, batch.meta) / obj.normaliser(
        batch.target_labels, batch.meta
    )
    torch.testing.assert_close(ours, ref, atol=1e-5, rtol=1e-5)


def test_labels_supervise_only_the_target_span(byte_tok):
    samples = _samples(byte_tok)[:3]
    batch = collate(samples, byte_tok.pad_token_id)
    for row, s in enumerate(samples):
        sup = batch.labels[row][batch.labels[row] != -100].tolist()
        assert sup == s.prompt.target_ids
    assert batch.meta["position"].tolist()[: len(samples[0].prompt.target_ids)] == list(
        range(len(samples[0].prompt.target_ids))
    )


def test_accumulation_does_not_change_training(byte_tok, tmp_path):
    a = _train(byte_tok, tmp_path / "a", mbs=4, accum=1)
    b = _train(byte_tok, tmp_path / "b", mbs=1, accum=4)
    c = _train(byte_tok, tmp_path / "c", mbs=2, accum=2)
    for (name, pa), pb, pc in zip(
        a.model.named_parameters(), b.model.parameters(), c.model.parameters(), strict=True
    ):
        torch.testing.assert_close(pa, pb, atol=2e-5, rtol=1e-4, msg=name)
        torch.testing.assert_close(pa, pc, atol=2e-5, rtol=1e-4, msg=name)


def test_compiled_training_reaches_the_eager_weights(byte_tok, tmp_path):
    from torch._dynamo.utils import counters

    eager = _train(byte_tok, tmp_path / "eager", mbs=4, accum=1)
    counters.clear()
    compiled = _train(byte_tok, tmp_path / "compiled", mbs=4, accum=1, compile=True)
    assert counters["stats"]["unique_graphs"] > 0  # the compiled stack ran
    for a, b in zip(eager.model.parameters(), compiled.model.parameters(), strict=True):
        torch.testing.assert_close(b, a, atol=1e-5, rtol=1e-4)


def test_token_budget_splits_in_order_within_both_caps():
    lengths = [5, 6, 6, 9, 20, 3, 4]
    assert split_micro_batches(range(7), lengths, 3) == [[0, 1, 2], [3, 4, 5], [6]]
    # 18 tokens: 3 rows of 6; 9 is 2 x 9 with the next row; 20 is over the budget, alone
    assert split_micro_batches(range(7), lengths, 3, 18) == [[0, 1, 2], [3], [4], [5, 6]]
    assert split_micro_batches([6, 5, 0], lengths, 8, 12) == [[6, 5], [0]]  # 3*5 > 12


def test_a_token_budget_bounds_every_pass_and_leaves_the_update_unchanged(byte_tok, tmp_path):
    fixed = _train(byte_tok, tmp_path / "fixed", mbs=6, accum=2)
    budget = max(s.length for s in _samples(byte_tok)) * 2
    capped = _train(byte_tok, tmp_path / "capped", mbs=6, accum=2, micro_batch_tokens=budget)
    samples = _samples(byte_tok)
    groups = capped.step_groups(samples, 0)
    assert len(groups) == len(fixed.step_groups(samples, 0))  # the same optimiser steps
    widths = [max(samples[i].length for i in mb) * len(mb) for g in groups for mb in g]
    assert max(widths) <= budget and sum(len(g) for g in groups) > len(groups) * 2
    for a, b in zip(fixed.model.parameters(), capped.model.parameters(), strict=True):
        torch.testing.assert_close(b, a, atol=1e-6, rtol=1e-5)


def test_resume_after_kill_reaches_the_same_weights(byte_tok, tmp_path):
    full = _train(byte_tok, tmp_path / "full", mbs=2, accum=1, epochs=2, every=2)
    _train(byte_tok, tmp_path / "killed", mbs=2, accum=1, epochs=2, every=2, stop_after_steps=5)
    resumed = _train(byte_tok, tmp_path / "killed", mbs=2, accum=1, epochs=2, every=2, resume=True)
    assert resumed.state.step == full.state.step
    for pa, pb in zip(full.model.parameters(), resumed.model.parameters(), strict=True):
        torch.testing.assert_close(pa, pb, atol=0, rtol=0)


def test_resume_without_checkpoint_is_a_clear_error(byte_tok, tmp_path):
    from recbias.errors import ModelError

    with pytest.raises(ModelError, match="no checkpoint"):
        _train(byte_tok, tmp_path, mbs=2, accum=1, resume=True)


def test_training_lowers_the_loss(byte_tok, tmp_path):
    samples = _samples(byte_tok)
    model = tiny.tiny_llama(len(byte_tok), seed=1)
    obj = build_objective(ObjectiveConfig())
    batch = collate(samples, byte_tok.pad_token_id)

    def loss():
        with torch.no_grad():
            lg = target_logits(model, batch)
            return float(obj(lg, batch.target_labels, batch.meta) / batch.target_labels.numel())

    before = loss()
    cfg = TrainConfig(epochs=5, lr=1e-2, warmup_steps=0, micro_batch_size=4, grad_accum=1)
    Trainer(model, obj, cfg, tmp_path, byte_tok.pad_token_id, seed=0, dtype="fp32").fit(
        samples, None
    )
    assert loss() < before * 0.7


def test_buckets_cover_every_sample_once_and_are_seeded():
    lengths = [5, 9, 3, 7, 7, 1, 2, 8, 6, 4, 10]
    a = bucketed_batches(lengths, 3, seed=1, bucket_factor=2)
    assert sorted(i for b in a for i in b) == list(range(len(lengths)))
    assert a == bucketed_batches(lengths, 3, seed=1, bucket_factor=2)
    assert a != bucketed_batches(lengths, 3, seed=2, bucket_factor=2)


def test_bucketing_reduces_padding():
    lengths = list(range(1, 257))

    def pad(batches):
        return sum(
            max(lengths[i] for i in b) * len(b) - sum(lengths[i] for i in b) for b in batches
        )

    assert pad(bucketed_batches(lengths, 8, 0, 32)) < 0.2 * pad(bucketed_batches(lengths, 8, 0, 1))


@pytest.mark.parametrize(
    ("key", "value"), [("epochs", -1), ("grad_accum", 0), ("lr", 0.0), ("snapshot_every", -1)]
)
def test_bad_train_settings_name_the_key(key, value):
    from recbias.errors import ConfigError

    with pytest.raises(ConfigError, match=f"train.{key}"):
        TrainConfig(**{key: value}).validate("train")


def test_snapshots_keep_the_weights_of_each_epoch_and_every_n_steps(byte_tok, tmp_path):
    model = tiny.tiny_llama(len(byte_tok), seed=1)
    cfg = TrainConfig(
        epochs=2,
        lr=1e-2,
        warmup_steps=0,
        micro_batch_size=2,
        grad_accum=1,
        max_grad_norm=0.0,
        snapshot_every=4,
        snapshot_epochs=True,
    )
    trainer = Trainer(
        model, build_objective(ObjectiveConfig()), cfg, tmp_path, byte_tok.pad_token_id, 0, "fp32"
    )
    trainer.fit(_samples(byte_tok), validate=None)
    names = sorted(p.name for p in (tmp_path / "checkpoints").iterdir())
    assert names == ["epoch-1", "epoch-2", "last", "step-12", "step-4", "step-8"]
    final = torch.load(tmp_path / "checkpoints" / "epoch-2" / "weights.pt", weights_only=True)
    for name, p in model.named_parameters():
        torch.testing.assert_close(final[name], p.detach())


def test_a_run_resumed_mid_epoch_does_not_start_that_epoch_again(byte_tok, tmp_path):
    class Recording:
        def __init__(self):
            self.inner = build_objective(ObjectiveConfig())
            self.epochs = []

        def __getattr__(self, name):
            return getattr(self.inner, name)

        def __call__(self, *args):
            return self.inner(*args)

        def on_epoch_start(self, epoch, model):
            self.epochs.append(epoch)

    def run(obj, **kw):
        cfg = TrainConfig(
            epochs=2, lr=1e-2, warmup_steps=0, micro_batch_size=2, grad_accum=1, checkpoint_every=1
        )
        model = tiny.tiny_llama(len(byte_tok), seed=1)
        Trainer(model, obj, cfg, tmp_path, byte_tok.pad_token_id, 0, "fp32").fit(
            _samples(byte_tok), validate=None, **kw
        )

    first, resumed = Recording(), Recording()
    run(first, stop_after_steps=8)  # 6 steps per epoch: killed inside epoch 2
    run(resumed, resume=True)
    assert first.epochs == [0, 1] and resumed.epochs == []


@pytest.mark.parametrize("share", [False, True])
def test_precomputed_targets_give_the_same_logits(any_tok, share):
    """The host-side target positions and prefix (no device syncs) select exactly the states
    that the boolean-mask path selects."""
    from recbias.lm.batching import precompute_targets, to_device

    samples = _samples(any_tok)[:6]
    model = tiny.tiny_llama(len(any_tok))
    plain = collate(samples, any_tok.pad_token_id)
    fast = collate(samples, any_tok.pad_token_id)
    n = shared_prefix_length(fast) if share else 0
    precompute_targets(fast, n)
    to_device(fast, torch.device("cpu"))
    assert fast.n_tokens == int(plain.attention_mask.sum())
    assert torch.equal(fast.target_labels, plain.target_labels)
    expected = target_logits(model, plain, share_prefix=share)
    assert torch.equal(target_logits(model, fast, share_prefix=share), expected)
