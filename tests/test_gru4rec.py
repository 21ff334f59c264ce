from __future__ import annotations

import numpy as np
import pytest
import torch

from recbias.baselines.gru4rec import GRU4RecConfig, GRU4RecNet, GRU4RecRecommender
from recbias.baselines.seqtrain import history_tensor
from recbias.errors import ConfigError
from recbias.evaluation.predictions import Recommender
from seq_helpers import N_ITEMS, next_item_samples

FAST = dict(embedding=32, hidden=32, max_len=12, epochs=30, lr=1e-2, batch_size=64, dropout=0.0)


@pytest.mark.parametrize("loss", ["ce", "bce"])
def test_learns_a_deterministic_next_item_rule(loss):
    torch.set_num_threads(1)
    cfg = GRU4RecConfig(**FAST, loss=loss, negatives=4 if loss == "bce" else 1)
    model = GRU4RecRecommender(cfg).fit(next_item_samples(300, seed=0), N_ITEMS)
    test = next_item_samples(100, seed=1, start_id=1000)
    recs = model.recommend(test, k=1)
    assert isinstance(model, Recommender)
    assert np.mean(recs.items[:, 0] == test["target"].to_numpy()) >= 0.95
    assert model.losses[-1] < model.losses[0]
    assert len(model.epoch_seconds) == cfg.epochs


def test_right_padding_is_invisible_and_positions_are_prefix_states():
    torch.manual_seed(0)
    cfg = GRU4RecConfig(embedding=8, hidden=8, layers=2, max_len=7, dropout=0.0)
    net = GRU4RecNet(N_ITEMS, cfg).eval()
    padded = history_tensor([[3, 4, 5]], N_ITEMS, 7)
    assert padded.tolist() == [[4, 5, 6, 0, 0, 0, 0]]
    with torch.no_grad():
        torch.testing.assert_close(net(padded), net(padded[:, :3]))
        every = net.states(padded, padded > 0)
        for t in range(3):
            torch.testing.assert_close(every[t], net.encode(padded[:, : t + 1])[0])


def test_same_seed_same_model_and_bucketing_keeps_the_data():
    train = next_item_samples(80, seed=3)
    small = dict(embedding=8, hidden=8, epochs=2, batch_size=16)
    a = GRU4RecRecommender(GRU4RecConfig(**small)).fit(train, N_ITEMS)
    b = GRU4RecRecommender(GRU4RecConfig(**small)).fit(train, N_ITEMS)
    c = GRU4RecRecommender(GRU4RecConfig(**small, seed=1)).fit(train, N_ITEMS)
    np.testing.assert_array_equal(a.scores(train), b.scores(train))
    assert not np.array_equal(a.scores(train), c.scores(train))
    # Unbucketed batches differ, so does the model, but the loss is about the same.
    d = GRU4RecRecommender(GRU4RecConfig(**small, bucket=False)).fit(train, N_ITEMS)
    assert d.losses[0] == pytest.approx(a.losses[0], rel=0.05)


@pytest.mark.parametrize(
    ("change", "key"),
    [
        ({"hidden": 0}, "hidden"),
        ({"loss": "bpr"}, "loss"),
        ({"negatives": 0}, "negatives"),
        ({"lr": 0.0}, "lr"),
        ({"dropout": -0.1}, "dropout"),
    ],
)
def test_invalid_config_names_the_key(change, key):
    with pytest.raises(ConfigError, match=rf"config key 'baselines\.gru4rec\.{key}'"):
        GRU4RecConfig(**change).validate("baselines.gru4rec")
