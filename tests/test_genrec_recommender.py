"""GenerativeRecommender end to end: learning, determinism, input errors, shipped config, runner."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from recbias.config import load_config
from recbias.data.config import DataConfig, PrepareConfig, SourceConfig
from recbias.errors import ConfigError, DataError, RecbiasError
from recbias.genrec import GenerativeRecommender, GenRecConfig, GenRecRunConfig
from recbias.genrec.runner import run_genrec

N_ITEMS = 30
CONFIG = Path(__file__).resolve().parents[1] / "configs" / "genrec_ml100k.toml"


def catalog() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "item": range(N_ITEMS),
            "title": [f"movie {i} part {i % 5}" for i in range(N_ITEMS)],
            "genres": [["A"] if i % 2 else ["B", "C"] for i in range(N_ITEMS)],
        }
    )


def successor_samples(n: int, seed: int) -> pd.DataFrame:
    """Histories of consecutive items; the next item is always last + 1 (mod N_ITEMS)."""
    rng = np.random.default_rng(seed)
    rows = []
    for s in range(n):
        start, length = rng.integers(0, N_ITEMS), rng.integers(1, 6)
        hist = [int((start + j) % N_ITEMS) for j in range(length)]
        rows.append({"sample_id": seed * 10_000 + s, "user": f"u{s}", "history": hist,
                     "target": (hist[-1] + 1) % N_ITEMS})  # fmt: skip
    return pd.DataFrame(rows)


def small_cfg(**kw) -> GenRecConfig:
    base = dict(encoder="tfidf", tfidf_dim=16, levels=2, codebook_size=6, max_suffix=20,
                d_model=32, heads=2, ff_dim=64, max_len=5, epochs=15, lr=3e-3, dropout=0.0,
                augment_prefixes=False, beam_size=10, dtype="fp32")  # fmt: skip
    return GenRecConfig(**{**base, **kw})


@pytest.mark.parametrize("arch", ["encoder_decoder", "decoder_only"])
def test_learns_the_successor_pattern(arch):
    rec = GenerativeRecommender(small_cfg(architecture=arch, position="absolute"))
    rec.fit(successor_samples(600, 1), catalog(), successor_samples(50, 2))
    test = successor_samples(100, 3)
    recs = rec.recommend(test, k=5)
    hr5 = (recs.items == test["target"].to_numpy()[:, None]).any(1).mean()
    assert hr5 >= 0.9
    assert rec.n_items == N_ITEMS and rec.codes.shape == (N_ITEMS, 3)
    assert rec.scores(test).shape == (100, N_ITEMS)
    assert len(rec.train_log) >= 1 and "valid_nll" in rec.train_log[0]


def test_fit_is_deterministic_under_the_seed():
    def run() -> np.ndarray:
        cfg = small_cfg(epochs=2, dropout=0.1, augment_prefixes=True)
        rec = GenerativeRecommender(cfg).fit(successor_samples(80, 1), catalog())
        return rec.scores(successor_samples(5, 3)).numpy()

    np.testing.assert_array_equal(run(), run())


def test_using_the_model_before_fit_raises():
    with pytest.raises(RecbiasError, match="call fit"):
        GenerativeRecommender(small_cfg()).recommend(successor_samples(2, 0), k=3)


def test_out_of_catalog_ids_and_missing_columns_raise():
    rec = GenerativeRecommender(small_cfg(epochs=1)).fit(successor_samples(20, 1), catalog())
    bad = successor_samples(2, 0)
    bad.at[0, "history"] = [3, N_ITEMS]
    with pytest.raises(DataError, match=f"item ids outside 0..{N_ITEMS - 1}"):
        rec.scores(bad)
    with pytest.raises(DataError, match="missing columns"):
        rec.fit_model(successor_samples(5, 0).drop(columns="target"))


def test_invalid_config_is_rejected_at_construction():
    with pytest.raises(ConfigError, match=r"config key 'heads': must be a divisor of d_model"):
        GenerativeRecommender(GenRecConfig(d_model=30, heads=4))


def test_shipped_config_loads_and_unknown_keys_are_named():
    cfg = load_config(GenRecRunConfig, CONFIG)
    assert cfg.genrec.architecture == "encoder_decoder" and cfg.data.source.kind == "ml100k"
    with pytest.raises(ConfigError, match="unknown config key 'genrec.codebook'"):
        load_config(GenRecRunConfig, CONFIG, ["genrec.codebook=8"])
    with pytest.raises(ConfigError, match="'genrec.position'"):
        load_config(GenRecRunConfig, CONFIG, ["genrec.position='learned'"])


def table_data(tmp_path: Path) -> DataConfig:
    src = tmp_path / "src"
    src.mkdir()
    rows = [f"u{u},{(u + j) % 12},{1000 + 20 * j + u}" for u in range(12) for j in range(10)]
    (src / "log.csv").write_text("user_id,item_id,timestamp\n" + "\n".join(rows) + "\n")
    titles = "\n".join(f"{i},Movie {i} {['red', 'blue', 'green'][i % 3]}" for i in range(12))
    (src / "items.csv").write_text("item_id,title\n" + titles + "\n")
    source = SourceConfig(
        kind="table", interactions=str(src / "log.csv"), items=str(src / "items.csv")
    )
    return DataConfig(source=source, prepare=PrepareConfig(kcore=2), cache_dir=str(tmp_path / "c"))


def test_run_genrec_writes_every_output(tmp_path):
    cfg = GenRecRunConfig(
        threads=1, data=table_data(tmp_path), genrec=small_cfg(codebook_size=4, epochs=3)
    )
    cfg.eval.ks, cfg.eval.bootstrap = [1, 5], 50
    result = run_genrec(cfg, tmp_path / "run")
    run = tmp_path / "run"
    names = {"config.toml", "environment.json", "codebook.json", "train_log.jsonl", "metrics.json"}
    assert names <= {p.name for p in run.iterdir()}
    preds = (run / "predictions" / "test.jsonl").read_text().splitlines()
    assert len(preds) == result["metrics"]["n"] and len(json.loads(preds[0])["items"]) == 5
    codebook = json.loads((run / "codebook.json").read_text())
    assert codebook["encoder"] == "tfidf" and codebook["unique_codes"] is True
    metrics = json.loads((run / "metrics.json").read_text())["metrics"]
    assert 0.0 <= metrics["HR@5"]["lo"] <= metrics["HR@5"]["mean"] <= metrics["HR@5"]["hi"] <= 1.0
    assert load_config(GenRecRunConfig, run / "config.toml") == cfg
