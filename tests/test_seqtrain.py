"""Shared-prefix units, the unit loss, epoch batching, bf16 and the cheap dropout."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F

from recbias.baselines.gru4rec import GRU4RecConfig, GRU4RecNet, GRU4RecRecommender
from recbias.baselines.sasrec import SASRecConfig, SASRecNet, SASRecRecommender
from recbias.baselines.seqtrain import epoch_batches, fast_dropout, units_loss
from recbias.baselines.sequnits import build_units, history_tensor
from recbias.errors import ConfigError, DataError

N_ITEMS = 9


def _augmented(n_users: int, length: int, max_len: int, seed: int) -> pd.DataFrame:
    """RecBole-style samples: every prefix of each user's sequence (rule: next = last + 1 mod N)."""
    rng = np.random.default_rng(seed)
    rows = []
    for user in range(n_users):
        first = int(rng.integers(N_ITEMS))
        seq = [(first + j) % N_ITEMS for j in range(int(rng.integers(3, length + 1)))]
        for i in range(1, len(seq)):
            rows.append({"user": user, "history": seq[max(0, i - max_len) : i], "target": seq[i]})
    frame = pd.DataFrame(rows)
    frame.insert(0, "sample_id", np.arange(len(frame)))
    return frame


def test_units_of_a_hand_made_case():
    histories = [[1], [1, 2], [1, 2, 3], [1, 2, 3, 4], [1, 2], []]
    targets = np.array([2, 3, 4, 5, 3, 7])  # row 4 duplicates row 1; row 5 has no history
    units = build_units(histories, targets, n_items=8, max_len=3)
    # Units in order of their root sample: rows 0, 1, 2, 4 ride on row 2; rows 3 and 5 alone.
    assert units.seqs.tolist() == [[2, 3, 4], [3, 4, 5], [0, 0, 0]]
    assert units.targets.tolist() == [[2, 3, 4], [-1, -1, 5], [7, -1, -1]]
    assert units.weights.tolist() == [[1, 2, 1], [0, 0, 1], [1, 0, 0]]
    assert units.counts.tolist() == [4, 1, 1] and units.widths.tolist() == [3, 3, 1]
    plain = build_units(histories, targets, n_items=8, max_len=3, shared=False)
    assert len(plain) == 6 and plain.counts.tolist() == [1] * 6


def _read_back(units) -> Counter:
    samples = Counter()
    for u, p in zip(*np.nonzero(units.weights.numpy()), strict=True):
        window = tuple(int(i) - 1 for i in units.seqs[u, : p + 1] if i > 0)
        samples[(window, int(units.targets[u, p]))] += int(units.weights[u, p])
    return samples


def test_every_sample_is_read_once_at_its_own_prefix():
    train = _augmented(40, 14, max_len=5, seed=0)
    units = build_units(train["history"].tolist(), train["target"].to_numpy(), N_ITEMS, 5)
    want = Counter(
        (tuple(h[-5:]), t) for h, t in zip(train["history"], train["target"], strict=True)
    )
    assert _read_back(units) == want
    assert len(units) < len(train)  # the prefixes of each user's first 5 items share a pass


def test_bad_items_name_the_column():
    with pytest.raises(DataError, match="target"):
        build_units([[1]], np.array([9]), n_items=9, max_len=3)
    with pytest.raises(DataError, match="history of row 0"):
        build_units([[-1]], np.array([1]), n_items=9, max_len=3)


def _plain_loss(net, train: pd.DataFrame, max_len: int) -> torch.Tensor:
    seqs = history_tensor(train["history"].tolist(), N_ITEMS, max_len)
    logits = net(seqs)  # one pass per sample
    return F.cross_entropy(logits, torch.tensor(train["target"].to_numpy()))


@pytest.mark.parametrize("kind", ["gru4rec", "sasrec"])
def test_shared_prefix_gradient_equals_the_per_sample_gradient(kind):
    torch.manual_seed(0)
    train = _augmented(12, 10, max_len=6, seed=1)
    if kind == "gru4rec":
        cfg = GRU4RecConfig(embedding=8, hidden=8, max_len=6, dropout=0.0, dtype="fp32")
        net = GRU4RecNet(N_ITEMS, cfg)
    else:
        cfg = SASRecConfig(hidden=8, heads=2, max_len=6, dropout=0.0, dtype="fp32")
        net = SASRecNet(N_ITEMS, cfg)
    units = build_units(train["history"].tolist(), train["target"].to_numpy(), N_ITEMS, 6)
    assert len(units) < len(train) / 2
    plain = _plain_loss(net, train, 6)
    want = torch.autograd.grad(plain, list(net.parameters()))
    shared = units_loss(net, units, cfg)
    got = torch.autograd.grad(shared, list(net.parameters()))
    torch.testing.assert_close(shared, plain)
    for a, b in zip(got, want, strict=True):
        torch.testing.assert_close(a, b, atol=1e-6, rtol=1e-5)


@pytest.mark.parametrize("bucket", [True, False])
def test_an_epoch_reads_each_unit_once_in_batches_of_about_batch_size(bucket):
    train = _augmented(60, 14, max_len=5, seed=2)
    units = build_units(train["history"].tolist(), train["target"].to_numpy(), N_ITEMS, 5)
    cfg = GRU4RecConfig(batch_size=16, bucket=bucket)
    batches = epoch_batches(units, cfg, torch.Generator().manual_seed(0))
    assert sorted(torch.cat(batches).tolist()) == list(range(len(units)))
    sizes = [int(units.counts[b].sum()) for b in batches]
    assert sum(sizes) == len(train)
    assert all(size < 16 + int(units.counts.max()) for size in sizes)
    assert sum(size >= 16 for size in sizes) >= len(batches) - 1


def test_without_sharing_batches_are_exactly_batch_size():
    train = _augmented(30, 10, max_len=5, seed=3)
    units = build_units(train["history"].tolist(), train["target"].to_numpy(), N_ITEMS, 5, False)
    batches = epoch_batches(units, GRU4RecConfig(batch_size=8), torch.Generator().manual_seed(0))
    sizes = sorted(len(b) for b in batches)
    assert sizes[1:] == [8] * (len(batches) - 1) and sizes[0] == len(train) - 8 * (len(sizes) - 1)


@pytest.mark.parametrize("model", ["gru4rec", "sasrec"])
def test_bf16_shared_prefix_training_learns_the_rule(model):
    torch.set_num_threads(1)
    train = _augmented(80, 12, max_len=8, seed=4)
    test = _augmented(30, 12, max_len=8, seed=5)
    common = dict(max_len=8, epochs=40, lr=1e-2, batch_size=64, dtype="bf16", dropout=0.1)
    if model == "gru4rec":
        rec = GRU4RecRecommender(GRU4RecConfig(**common, embedding=16, hidden=16))
    else:
        rec = SASRecRecommender(SASRecConfig(**common, hidden=16))
    rec.fit(train, N_ITEMS)
    hit = rec.recommend(test, k=1).items[:, 0] == test["target"].to_numpy()
    assert hit.mean() >= 0.95
    assert rec.losses[-1] < rec.losses[0]
    assert rec.scores(test).dtype == np.float32


def test_fast_dropout_has_the_law_of_dropout():
    torch.manual_seed(0)
    x = torch.ones(200_000)
    out = fast_dropout(x, 0.3, training=True)
    assert (out == 0).float().mean().item() == pytest.approx(0.3, abs=0.005)
    torch.testing.assert_close(out[out > 0], torch.full_like(out[out > 0], 1 / 0.7))
    assert fast_dropout(x, 0.3, training=False) is x


def test_invalid_dtype_names_the_key():
    with pytest.raises(ConfigError, match=r"config key 'baselines\.gru4rec\.dtype'"):
        GRU4RecConfig(dtype="fp16").validate("baselines.gru4rec")


@pytest.mark.parametrize("beta2", [0.0, 1.0])
def test_adam_beta2_outside_0_1_names_the_key(beta2):
    with pytest.raises(ConfigError, match=r"config key 'baselines\.gru4rec\.beta2'"):
        GRU4RecConfig(beta2=beta2).validate("baselines.gru4rec")


def test_adam_uses_the_configured_beta2():
    from recbias.baselines.seqtrain import make_optimizer

    net = torch.nn.Linear(2, 2)
    assert make_optimizer(net, GRU4RecConfig(beta2=0.98)).param_groups[0]["betas"] == (0.9, 0.98)


@pytest.mark.parametrize("model", ["gru4rec", "sasrec"])
def test_on_epoch_sees_each_epoch_in_eval_mode_and_changes_no_weight(model):
    torch.set_num_threads(1)
    train, probe = _augmented(20, 8, max_len=6, seed=6), _augmented(3, 6, max_len=6, seed=7)
    common = dict(max_len=6, epochs=3, batch_size=16, dropout=0.3, seed=3)

    def make():
        if model == "gru4rec":
            return GRU4RecRecommender(GRU4RecConfig(**common, embedding=8, hidden=8))
        return SASRecRecommender(SASRecConfig(**common, hidden=8))

    seen = []

    def hook(epoch, rec):
        assert not rec.net.training
        torch.rand(100)  # the hook's own randomness must not reach the training RNG
        seen.append((epoch, rec.scores(probe)))

    watched, plain = make().fit(train, N_ITEMS, on_epoch=hook), make().fit(train, N_ITEMS)
    assert [epoch for epoch, _ in seen] == [0, 1, 2]
    assert not np.allclose(seen[0][1], seen[-1][1])  # the curve follows training
    np.testing.assert_array_equal(seen[-1][1], watched.scores(probe))
    for mine, theirs in zip(watched.net.parameters(), plain.net.parameters(), strict=True):
        torch.testing.assert_close(mine, theirs, rtol=0, atol=0)
    assert watched.losses == plain.losses
