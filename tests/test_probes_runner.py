"""Every probe end to end on a fake multi-token generative recommender: run dir contents."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from recbias.errors import ConfigError
from recbias.probes import heads
from recbias.probes import models as probe_models
from recbias.probes.runner import CHANNELS, ProbeData, load_probe_config, run_probe
from recbias.recs import Recommendations

CONFIGS = Path(__file__).parents[1] / "configs"
N_ITEMS, TOKENS, MAX_LEN = 24, 3, 5


class FakeGenRec:
    """Satisfies the genrec contract: an ALiBi head over TOKENS tokens per history item."""

    def __init__(self, m: float, seed: int = 0) -> None:
        rng = np.random.default_rng(seed)
        self.m, self.n_items = m, N_ITEMS
        self.content = rng.standard_normal((N_ITEMS, TOKENS))  # per-token relevance logits
        self.emb = rng.standard_normal((N_ITEMS, 6))
        self.item_codes = torch.as_tensor(rng.integers(0, 4, (N_ITEMS, TOKENS)))
        self.sigma, self.noise_seed = 0.0, 0

    def set_attention_noise(self, sigma: float, seed: int) -> None:
        self.sigma, self.noise_seed = sigma, seed

    def _item_attention(self, hist: list[int], rng: np.random.Generator) -> np.ndarray:
        hist = np.asarray(hist[-MAX_LEN:])
        bias = heads.alibi_bias(len(hist), TOKENS)
        noise = rng.standard_normal(bias.shape) * self.sigma
        w = heads.attention(self.content[hist].ravel(), self.m, bias, noise)
        return np.pad(heads.item_mass(w, TOKENS), (MAX_LEN - len(hist), 0))

    def history_attention(self, samples: pd.DataFrame) -> torch.Tensor:
        rng = np.random.default_rng(self.noise_seed)
        return torch.as_tensor(np.stack([self._item_attention(h, rng) for h in samples["history"]]))

    def scores(self, samples: pd.DataFrame) -> torch.Tensor:
        attn = self.history_attention(samples).numpy()
        ctx = np.stack(
            [
                a[-len(h[-MAX_LEN:]) :] @ self.emb[h[-MAX_LEN:]]
                for a, h in zip(attn, samples["history"], strict=True)
            ]
        )
        return torch.log_softmax(torch.as_tensor(2.0 * ctx @ self.emb.T), dim=1)

    def recommend(self, samples: pd.DataFrame, k: int) -> Recommendations:
        values, items = self.scores(samples).topk(k, dim=1)
        return Recommendations(items.numpy(), values.numpy(), samples["sample_id"].to_numpy())


def _data(seed: int = 0) -> ProbeData:
    rng = np.random.default_rng(seed)

    def frame(n: int, offset: int) -> pd.DataFrame:
        return pd.DataFrame(
            {
                "sample_id": np.arange(offset, offset + n),
                "user": [f"u{i % 9}" for i in range(n)],
                "history": [
                    (rng.zipf(1.6, rng.integers(2, 8)) % N_ITEMS).tolist() for _ in range(n)
                ],
                "target": rng.zipf(1.6, n) % N_ITEMS,
            }
        )

    return ProbeData(train=frame(80, 0), samples=frame(20, 1000), n_items=N_ITEMS)


def _cfg(channel: str, *overrides: str):
    return load_probe_config(channel, CONFIGS / f"probe_{channel}.toml", list(overrides))


def _check_run_dir(run_dir: Path, channel: str) -> dict:
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["channel"] == channel
    for name in ("config.toml", "environment.json", *metrics["figures"]):
        assert (run_dir / name).stat().st_size > 0
    assert (run_dir / metrics["figures"][0]).read_bytes()[:4] == b"\x89PNG"
    assert not list(run_dir.glob(".*.tmp"))
    return metrics


def test_shipped_configs_load():
    for channel in CHANNELS:
        assert _cfg(channel).name == f"probe_{channel}"


def test_positional_end_to_end_measured_in_items(tmp_path):
    cfg = _cfg("positional", "positional.m_grid=[0.0, 0.3, 1.0, 3.0]", "positional.key_draws=16")
    data = _data()
    metrics = _check_run_dir_after(
        run_probe("positional", cfg, tmp_path, factory=FakeGenRec, data=data),
        tmp_path,
        "positional",
    )
    rows = metrics["trained"]
    assert metrics["trained_non_decreasing"] and metrics["isolated"]["non_decreasing"]
    # item-level window: the last 2 items = the last 6 tokens of the fake head
    hist = data.samples["history"][0][-MAX_LEN:]
    bias = heads.alibi_bias(len(hist), TOKENS)
    w = heads.attention(FakeGenRec(0.3).content[hist].ravel(), 0.3, bias)
    got = FakeGenRec(0.3).history_attention(data.samples.head(1)).numpy()[0, -2:].sum()
    assert got == pytest.approx(w[-2 * TOKENS :].sum()) and got > w[-2:].sum()
    assert rows[0]["near_mass"] < rows[-1]["near_mass"] <= 1.0
    assert {"ndcg@10", "coverage", "gini"} <= rows[0].keys()


def _check_run_dir_after(metrics: dict, run_dir: Path, channel: str) -> dict:
    assert _check_run_dir(run_dir, channel) == json.loads(json.dumps(metrics, default=str))
    return metrics


def test_positional_falls_back_to_the_isolated_head_without_genrec(tmp_path, monkeypatch):
    monkeypatch.setattr(
        probe_models, "genrec_available", lambda: "recbias.genrec is not importable"
    )
    cfg = _cfg("positional", "positional.key_draws=8")
    metrics = run_probe("positional", cfg, tmp_path)
    assert metrics["trained"] is None and "not importable" in metrics["trained_skipped"]
    _check_run_dir(tmp_path, "positional")


def test_popularity_end_to_end_items_and_tokens(tmp_path):
    cfg = _cfg("popularity", "popularity.bootstrap=50", "popularity.sgd.seeds=5")
    metrics = run_probe("popularity", cfg, tmp_path, model=FakeGenRec(0.5), data=_data())
    _check_run_dir(tmp_path, "popularity")
    for unit in ("item", "token"):
        platform = metrics["model"][unit]["platform"]
        assert platform["lo"] <= platform["exponent"] <= platform["hi"]
    assert metrics["model"]["token"]["user"]["n_informative_samples"] > 0
    assert metrics["sgd"]["exponent"][-1] > 1.0


def test_popularity_rejects_a_scorer_without_scores(tmp_path):
    class BeamOnly:
        def recommend(self, samples, k):
            raise AssertionError

    with pytest.raises(ConfigError, match=r"model\.kind"):
        run_probe("popularity", _cfg("popularity"), tmp_path, model=BeamOnly(), data=_data())
    assert not (tmp_path / "metrics.json").exists()


def test_latent_end_to_end_and_noise_is_reset(tmp_path):
    cfg = _cfg(
        "latent",
        "latent.sigmas=[0.0, 0.5, 3.0]",
        "latent.draws=3",
        "latent.head_draws=4000",
        "latent.k=5",
    )
    model = FakeGenRec(0.2)
    metrics = run_probe("latent", cfg, tmp_path, model=model, data=_data())
    _check_run_dir(tmp_path, "latent")
    rows = metrics["model"]
    assert rows[0]["jaccard_vs_clean"] == 1.0 and rows[0]["var_log_odds_shift"] == 0.0
    assert rows[2]["jaccard_vs_clean"] < rows[1]["jaccard_vs_clean"] <= 1.0
    assert rows[2]["var_log_odds_shift"] > rows[1]["var_log_odds_shift"] > 0
    assert model.sigma == 0.0
    assert all(abs(h["var_ratio"] - 1) < 0.1 for h in metrics["head"][1:])


def test_synthetic_end_to_end(tmp_path):
    cfg = _cfg("synthetic", "synthetic.rounds=5", "synthetic.seeds=20")
    metrics = run_probe("synthetic", cfg, tmp_path)
    _check_run_dir(tmp_path, "synthetic")
    gains = [c["expected_increase"] for c in metrics["curves"]]
    assert gains[0] == pytest.approx(0.0) and all(g > 0 for g in gains[1:])


def test_unknown_channel_and_injected_model_without_data(tmp_path):
    with pytest.raises(ConfigError, match="probe channel 'colour'"):
        load_probe_config("colour", None)
    with pytest.raises(ConfigError, match="ProbeData"):
        run_probe("latent", _cfg("latent"), tmp_path, model=FakeGenRec(0.0))
