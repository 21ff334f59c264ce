"""recbias seqrec on a [data] section: prepared splits, progress, per-model files, resume, CIs."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from recbias.cli import main
from recbias.config import load_config
from recbias.data import PreparedDataset, prepare_dataset
from recbias.errors import ConfigError
from recbias.evaluation import seqrec_run
from recbias.evaluation.loo import SeqRecConfig
from recbias.evaluation.seqrec_run import load_split, run_seqrec_dir
from recbias.metrics.stats import bootstrap_ci


def write_data(tmp_path: Path) -> Path:
    """20 users walking a cycle of 8 items from different starts (learnable next item)."""
    rows = [f"u{u},i{(u + t) % 8},{1000 * u + t}" for u in range(20) for t in range(8)]
    (tmp_path / "log.csv").write_text("user_id,item_id,timestamp\n" + "\n".join(rows) + "\n")
    (tmp_path / "items.csv").write_text(
        "item_id,title\n" + "".join(f"i{i},Item {i}\n" for i in range(8))
    )
    cfg = tmp_path / "seq.toml"
    cfg.write_text(f"""
name = "seq"
seed = 1
output_dir = "{tmp_path / "runs"}"
models = ["popularity", "gru4rec"]
k = 3
bootstrap = 200
epoch_valid_samples = 10
[data]
cache_dir = "{tmp_path / "cache"}"
[data.source]
kind = "table"
interactions = "{tmp_path / "log.csv"}"
items = "{tmp_path / "items.csv"}"
[data.prepare]
kcore = 0
max_history = 4
split = "leave_one_out"
[baselines.gru4rec]
embedding = 16
hidden = 16
max_len = 4
epochs = 3
lr = 0.01
batch_size = 16
dropout = 0.0
dtype = "fp32"
""")
    return cfg


def test_data_section_is_accepted_and_the_prepared_splits_are_used(tmp_path):
    cfg = load_config(SeqRecConfig, write_data(tmp_path))
    split = load_split(cfg)
    data = PreparedDataset.load(prepare_dataset(cfg.data))
    for part in ("train", "valid", "test"):
        assert getattr(split, part)["sample_id"].tolist() == data.split(part)["sample_id"].tolist()
    assert split.n_items == 8 and split.item_tokens.tolist() == data.items["raw_id"].tolist()


def test_cli_writes_each_model_progress_cis_and_paired_tests(tmp_path, capsys):
    config = write_data(tmp_path)
    run = tmp_path / "run"
    assert main(["seqrec", str(config), "--run-dir", str(run)]) == 0
    shown = capsys.readouterr()
    assert "gru4rec epoch 3/3: loss" in shown.err and "ETA 0 s" in shown.err
    assert "valid_NDCG@3" in shown.err
    assert "NDCG@3: gru4rec − popularity" in shown.out
    assert not (run / "UNFINISHED").exists()
    metrics = json.loads((run / "metrics.json").read_text())
    gru = json.loads((run / "models" / "gru4rec.json").read_text())
    assert len(gru["epoch_losses"]) == 3 and gru["config"]["settings"]["epochs"] == 3
    ranks = np.asarray(gru["test_ranks"])
    assert len(ranks) == 20  # one leave-one-out test sample per user
    hit = bootstrap_ci((ranks < 3).astype(float), 200, seed=1)
    assert metrics["test"]["gru4rec"]["Hit@3"] == pytest.approx(hit._asdict())
    assert metrics["test"]["gru4rec"]["Hit@3"]["mean"] == pytest.approx(gru["test"]["Hit@3"])
    paired = metrics["paired_vs_popularity"]["gru4rec"]["NDCG@3"]
    assert paired["n"] == 20 and paired["lo"] <= paired["diff"] <= paired["hi"]


def test_results_are_written_as_each_model_finishes(tmp_path):
    cfg = load_config(SeqRecConfig, write_data(tmp_path))
    run = tmp_path / "run"
    seen = []

    def progress(event):
        if event["event"] == "start" and event["model"] == "gru4rec":
            seen.append(sorted(p.name for p in (run / "models").iterdir()))

    run_seqrec_dir(cfg, run, progress=progress)
    assert seen == [["popularity.json"]]


def test_resume_reuses_matching_models_and_refuses_changed_ones(tmp_path, monkeypatch, capsys):
    config = write_data(tmp_path)
    run = tmp_path / "run"
    assert main(["seqrec", str(config), "--run-dir", str(run)]) == 0
    before = (run / "models" / "gru4rec.json").read_text()
    calls = []
    real = seqrec_run.run_model
    monkeypatch.setattr(
        seqrec_run, "run_model", lambda *a, **k: calls.append(a[0]) or real(*a, **k)
    )
    (run / "models" / "popularity.json").unlink()
    assert main(["seqrec", str(config), "--run-dir", str(run), "--resume"]) == 0
    assert calls == ["popularity"] and (run / "models" / "gru4rec.json").read_text() == before
    config_text = (run / "config.toml").read_text()
    args = ["seqrec", str(config), "--run-dir", str(run), "--resume"]
    assert main([*args, "--set", "baselines.gru4rec.epochs=4"]) == 2
    assert "settings.epochs: 3 then, 4 now" in capsys.readouterr().err
    assert (run / "config.toml").read_text() == config_text


def test_reference_must_be_a_model():
    with pytest.raises(ConfigError, match="config key 'reference'"):
        SeqRecConfig(models=["popularity"], reference="sasrec").validate()
