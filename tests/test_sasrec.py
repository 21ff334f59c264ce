from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from recbias.baselines.sasrec import (
    SASRecConfig,
    SASRecNet,
    SASRecRecommender,
    history_tensor,
    top_k,
)
from recbias.baselines.seqtrain import bce_loss, sample_negatives, trim
from recbias.errors import ConfigError
from recbias.evaluation.predictions import Recommender
from seq_helpers import N_ITEMS, next_item_samples

FAST = SASRecConfig(hidden=32, epochs=40, lr=5e-3, batch_size=64, dropout=0.1)


@pytest.fixture(scope="module")
def fitted():
    torch.set_num_threads(1)
    return SASRecRecommender(FAST).fit(next_item_samples(300, seed=0), N_ITEMS)


def test_learns_a_deterministic_next_item_rule(fitted):
    test = next_item_samples(100, seed=1, start_id=1000)
    recs = fitted.recommend(test, k=5)
    hr1 = float(np.mean(recs.items[:, 0] == test["target"].to_numpy()))
    assert hr1 >= 0.99
    assert fitted.losses[-1] < fitted.losses[0]


def test_shapes_and_protocol(fitted):
    test = next_item_samples(7, seed=2)
    assert isinstance(fitted, Recommender)
    assert fitted.scores(test).shape == (7, N_ITEMS)
    recs = fitted.recommend(test, k=3)
    assert recs.items.shape == (7, 3) and recs.scores.shape == (7, 3)
    assert recs.sample_ids.tolist() == test["sample_id"].tolist()
    assert np.all(np.diff(recs.scores, axis=1) <= 0)


def test_same_seed_same_model_and_caller_rng_untouched():
    train = next_item_samples(60, seed=3)
    cfg = SASRecConfig(hidden=16, epochs=2, batch_size=16)
    torch.manual_seed(123)
    before = torch.rand(1)
    torch.manual_seed(123)
    a = SASRecRecommender(cfg).fit(train, N_ITEMS)
    assert torch.equal(torch.rand(1), before)
    b = SASRecRecommender(cfg).fit(train, N_ITEMS)
    other = SASRecRecommender(SASRecConfig(hidden=16, epochs=2, batch_size=16, seed=1))
    np.testing.assert_array_equal(a.scores(train), b.scores(train))
    assert not np.array_equal(a.scores(train), other.fit(train, N_ITEMS).scores(train))


def test_ties_go_to_the_smaller_item_and_excluded_items_are_empty():
    scores = np.array(
        [[1.0, 3.0, 3.0, 0.0], [2.0, 2.0, 2.0, 2.0], [-np.inf, 1.0, -np.inf, -np.inf]]
    )
    items, values = top_k(scores, 3)
    assert items.tolist() == [[1, 2, 0], [0, 1, 2], [1, -1, -1]]
    assert np.isnan(values[2, 1:]).all()
    items, _ = top_k(scores[:1], 6)  # k beyond the catalog: padded with -1
    assert items.tolist() == [[1, 2, 0, 3, -1, -1]]


def test_exclude_history(fitted):
    test = next_item_samples(20, seed=4)
    model = SASRecRecommender(SASRecConfig(exclude_history=True))
    model.net, model.n_items = fitted.net, fitted.n_items
    recs = model.recommend(test, k=N_ITEMS)
    for row, hist in zip(recs.items, test["history"], strict=True):
        assert not set(row[row >= 0].tolist()) & set(hist)


@pytest.mark.parametrize("norm", ["pre", "post"])
def test_right_padding_is_invisible(norm):
    torch.manual_seed(0)
    net = SASRecNet(N_ITEMS, SASRecConfig(hidden=16, max_len=6, dropout=0.0, norm=norm)).eval()
    short = history_tensor([[3, 4]], N_ITEMS, 6)
    assert short.tolist() == [[4, 5, 0, 0, 0, 0]]
    # Another row padded differently, and the same history without any padding.
    mixed = history_tensor([[3, 4], [1, 2, 3, 4, 5]], N_ITEMS, 6)
    with torch.no_grad():
        alone = net(short[:, :2])
        torch.testing.assert_close(net(short), alone)
        torch.testing.assert_close(net(mixed)[:1], alone)


@pytest.mark.parametrize("norm", ["pre", "post"])
def test_each_position_is_the_state_of_its_prefix(norm):
    torch.manual_seed(0)
    cfg = SASRecConfig(hidden=16, layers=2, max_len=6, dropout=0.0, norm=norm)
    net = SASRecNet(N_ITEMS, cfg).eval()
    seq = history_tensor([[5, 1, 7, 2, 9]], N_ITEMS, 6)
    with torch.no_grad():
        every = net.states(seq, seq > 0)  # [5, hidden]
        for t in range(5):
            torch.testing.assert_close(every[t], net.encode(seq[:, : t + 1])[0])


@pytest.mark.parametrize(
    ("change", "key"),
    [
        ({"heads": 3}, "heads"),
        ({"dropout": 1.0}, "dropout"),
        ({"epochs": 0}, "epochs"),
        ({"norm": "sandwich"}, "norm"),
        ({"activation": "tanh"}, "activation"),
    ],
)
def test_invalid_config_names_the_key(change, key):
    with pytest.raises(ConfigError, match=rf"baselines\.sasrec\.{key}"):
        SASRecConfig(**change).validate("baselines.sasrec")


def test_bce_loss_learns_the_rule_too():
    torch.set_num_threads(1)
    cfg = SASRecConfig(hidden=32, epochs=40, lr=5e-3, batch_size=64, dropout=0.1, loss="bce",
                       negatives=4)  # fmt: skip
    model = SASRecRecommender(cfg).fit(next_item_samples(300, seed=0), N_ITEMS)
    test = next_item_samples(100, seed=1, start_id=1000)
    hr1 = float(np.mean(model.recommend(test, k=1).items[:, 0] == test["target"].to_numpy()))
    assert hr1 >= 0.95


def test_negatives_never_hit_the_positive_and_cover_the_rest():
    gen = torch.Generator().manual_seed(0)
    targets = torch.arange(5).repeat(400)
    negatives = sample_negatives(targets, 5, 3, gen)
    assert negatives.shape == (2000, 3)
    assert not (negatives == targets[:, None]).any()
    for target in range(5):  # the other four items, each about a quarter of the draws
        counts = torch.bincount(negatives[targets == target].flatten(), minlength=5)
        assert counts[target] == 0 and counts.min() == 0
        others = counts[torch.arange(5) != target].float() / (400 * 3)
        assert torch.allclose(others, torch.full((4,), 0.25), atol=0.05)


def test_bce_loss_matches_a_plain_formula():
    torch.manual_seed(0)
    state, items = torch.randn(3, 4), torch.randn(6, 4)
    targets, negatives = torch.tensor([0, 2, 5]), torch.tensor([[1, 3], [0, 4], [2, 2]])
    want = 0.0
    for b in range(3):
        want -= torch.log(torch.sigmoid(state[b] @ items[targets[b]]))
        for n in negatives[b]:
            want -= torch.log(1 - torch.sigmoid(state[b] @ items[n]))
    torch.testing.assert_close(bce_loss(state, items, targets, negatives), want / 3)


def test_dropping_padding_columns_changes_nothing(fitted):
    seqs = history_tensor([[1, 2], [3, 4, 5, 6]], N_ITEMS, FAST.max_len)
    assert trim(seqs).shape == (2, 4)
    with torch.no_grad():
        torch.testing.assert_close(fitted.net(seqs), fitted.net(trim(seqs)))


@pytest.mark.parametrize(
    ("change", "key"),
    [({"loss": "mse"}, "loss"), ({"ffn": -1}, "ffn"), ({"negatives": 0}, "negatives")],
)
def test_invalid_training_config_names_the_key(change, key):
    with pytest.raises(ConfigError, match=rf"config key 'baselines\.sasrec\.{key}'"):
        SASRecConfig(**change).validate("baselines.sasrec")


def recbole_sasrec_reference(net: SASRecNet, seq: torch.Tensor) -> torch.Tensor:
    """RecBole 1.2.1's SASRec forward written out op by op (eval mode): the last real state."""
    hidden = net.items.embedding_dim
    x = net.items(seq) + net.positions(torch.arange(seq.shape[1]))[None]
    x = F.layer_norm(x, (hidden,), net.norm_in.weight, net.norm_in.bias, 1e-12)
    width = seq.shape[1]
    mask = torch.ones(width, width).tril().bool()[None, None] & (seq > 0)[:, None, None, :]
    for block in net.blocks:
        q, k, v = block.qkv(x).chunk(3, dim=-1)
        heads = block.heads

        def split(t, heads=heads):
            return t.view(len(seq), width, heads, -1).transpose(1, 2)

        scores = split(q) @ split(k).transpose(-1, -2) / (hidden // heads) ** 0.5
        scores = torch.where(mask, scores, torch.tensor(-10000.0))  # RecBole's additive mask
        context = (scores.softmax(-1) @ split(v)).transpose(1, 2).reshape(len(seq), width, -1)
        a = block.norm_attn(block.out(context) + x)
        x = block.norm_ffn(block.ffn_out(F.gelu(block.ffn_in(a))) + a)
    last = (seq > 0).sum(dim=1) - 1
    return x[torch.arange(len(seq)), last]


def test_post_norm_gelu_is_recboles_sasrec():
    torch.manual_seed(0)
    cfg = SASRecConfig(hidden=16, heads=2, layers=2, ffn=24, max_len=6, dropout=0.0, norm="post",
                       activation="gelu")  # fmt: skip
    net = SASRecNet(N_ITEMS, cfg).eval()
    for param in net.parameters():  # move LayerNorms and biases off their (ones, zeros) init
        param.data += 0.1 * torch.randn_like(param)
    seq = history_tensor([[5, 1, 7], [2, 9, 3, 4, 8, 6], [11]], N_ITEMS, 6)
    with torch.no_grad():
        torch.testing.assert_close(net.encode(seq), recbole_sasrec_reference(net, seq))


def test_post_norm_learns_the_rule_too():
    torch.set_num_threads(1)
    cfg = SASRecConfig(hidden=32, epochs=40, lr=5e-3, batch_size=64, dropout=0.1, norm="post",
                       activation="gelu")  # fmt: skip
    model = SASRecRecommender(cfg).fit(next_item_samples(300, seed=0), N_ITEMS)
    test = next_item_samples(100, seed=1, start_id=1000)
    hr1 = float(np.mean(model.recommend(test, k=1).items[:, 0] == test["target"].to_numpy()))
    assert hr1 >= 0.95
