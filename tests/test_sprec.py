"""SPRec self-play: rejected-item selection, config checks and end-to-end runs on the tiny model."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest

import tiny
from recbias.cli import main
from recbias.config import from_dict
from recbias.errors import ConfigError
from recbias.llmrec import RunConfig
from recbias.llmrec.config import SPRecConfig
from recbias.llmrec.sprec import draw_samples, pick_rejected
from test_cli import write_config

TITLES = ["A", "B", "C", "D", "B"]  # items 1 and 4 share a title

SPREC = """
[sprec]
iterations = 2
samples = 24
lr = 0.01
warmup_steps = 0
dpo_micro_batch_size = 2
dpo_grad_accum = 2
"""


def test_top1_takes_the_best_items_that_are_not_the_target_nor_share_its_title():
    ranked = np.array([[1, 4, 2, 3], [0, 2, -1, -1], [2, -1, -1, -1]])
    targets = np.array([1, 3, 2])
    rng = np.random.default_rng(0)
    one = pick_rejected(ranked, targets, TITLES, SPRecConfig(n_rejected=1), rng)
    assert one == [[2], [0], None]
    two = pick_rejected(ranked, targets, TITLES, SPRecConfig(n_rejected=2), rng)
    assert two == [[2, 3], [0, 2], None]


def test_sample_draws_distinct_items_from_the_top_k_non_targets():
    ranked = np.array([[0, 1, 2, 3, 4]] * 200)
    cfg = SPRecConfig(rejected="sample", top_k=2, n_rejected=1)
    picked = pick_rejected(ranked, np.zeros(200, int), TITLES, cfg, np.random.default_rng(0))
    firsts = [p[0] for p in picked]
    assert set(firsts) == {1, 2}  # item 4 ranks below the top 2 non-targets
    assert 60 < firsts.count(1) < 140
    cfg = SPRecConfig(rejected="sample", top_k=3, n_rejected=3)
    picked = pick_rejected(ranked[:20], np.zeros(20, int), TITLES, cfg, np.random.default_rng(1))
    assert all(sorted(p) == [1, 2, 3] for p in picked)


def test_draw_samples_is_seeded_per_iteration_and_without_replacement():
    df = pd.DataFrame({"sample_id": range(50), "target": range(50)})
    a, b = draw_samples(df, 20, 0, 0), draw_samples(df, 20, 0, 1)
    assert a["sample_id"].is_unique and len(a) == 20
    assert a.equals(draw_samples(df, 20, 0, 0)) and not a.equals(b)
    assert len(draw_samples(df, 99, 0, 0)) == 50


@pytest.mark.parametrize(
    ("keys", "message"),
    [
        ({"sprec": {"iterations": -1}}, "sprec.iterations"),
        ({"sprec": {"rejected": "sample", "top_k": 1, "n_rejected": 2}}, "sprec.top_k"),
        ({"sprec": {"dpo": {"label_smoothing": 0.5}}}, "sprec.dpo.label_smoothing"),
        ({"sprec": {"iterations": 1, "top_k": 12, "rejected": "sample"}}, "decode.beam.num_return"),
        ({"sprec": {"iterations": 1}, "train": {"parallel": "fsdp"}}, "not supported with"),
    ],
)
def test_bad_sprec_settings_are_refused_at_load_time(keys, message):
    with pytest.raises(ConfigError, match=message):
        from_dict(RunConfig, keys)


def _log_records(run):
    return [json.loads(line) for line in (run / "train_log.jsonl").read_text().splitlines()]


def test_two_iterations_write_a_complete_run(tmp_path, tiny_ckpt, table_data):
    cfg = write_config(tmp_path, tiny_ckpt, table_data, SPREC)
    run = tmp_path / "run"
    assert main(["run", str(cfg), "--run-dir", str(run)]) == 0
    for name in ["metrics.json", "predictions/llm.jsonl", "model/config.json", "summary.md"]:
        assert (run / name).exists(), name
    assert not list((run / "sprec").rglob("checkpoints"))
    metrics = json.loads((run / "metrics.json").read_text())
    iterations = metrics["training"]["sprec"]["iterations"]
    assert [it["iteration"] for it in iterations] == [0, 1]
    for it in iterations:
        assert it["pairs"] + it["dropped"] == 24 and it["pairs"] > 0
        assert it["sft_steps"] == math.ceil(24 / 8) and it["dpo_steps"] == math.ceil(
            it["pairs"] / 4
        )
        assert 0 <= it["rewards/accuracies"] <= 1 and it["val_ndcg"] is not None
    assert metrics["timing"]["sprec"] > 0
    dpo = [r for r in _log_records(run) if r.get("phase") == "dpo" and r["event"] == "train"]
    assert {r["sprec_iteration"] for r in dpo} == {0, 1}
    for r in dpo:
        assert {"rewards/chosen", "rewards/margins", "rewards/accuracies"} <= set(r)
    # The reference is the model after the iteration's SFT: the first DPO step starts at log 2.
    first = [r for r in dpo if r["step"] == 1]
    assert [r["loss"] for r in first] == pytest.approx([math.log(2)] * 2, abs=1e-4)
    assert [r["rewards/margins"] for r in first] == pytest.approx([0.0, 0.0], abs=1e-4)


def test_sdpo_with_sampled_rejections_and_lora(tmp_path, tiny_ckpt, table_data):
    extra = SPREC.replace("iterations = 2", "iterations = 1") + (
        'rejected = "sample"\ntop_k = 4\nn_rejected = 3\nsft_epochs = 0\n'
        "[model.lora]\nr = 4\nalpha = 8\ntarget_modules = ['q_proj', 'v_proj']\n"
    )
    cfg = write_config(tmp_path, tiny_ckpt, table_data, extra)
    run = tmp_path / "run"
    assert main(["run", str(cfg), "--run-dir", str(run), "--set", "model.finetune=lora"]) == 0
    assert (run / "adapter").is_dir() and (run / "predictions/llm.jsonl").is_file()
    (it,) = json.loads((run / "metrics.json").read_text())["training"]["sprec"]["iterations"]
    assert "sft_steps" not in it and it["dpo_steps"] > 0
    first = [r for r in _log_records(run) if r.get("phase") == "dpo" and r.get("step") == 1]
    assert first[0]["loss"] == pytest.approx(math.log(4), abs=1e-4)  # log(1 + K), K = 3


def test_compare_and_audit_an_sprec_method(tmp_path, tiny_ckpt):
    from test_audit import GENRES, QUICK
    from test_compare import write_config as write_compare

    data = tiny.write_table(tmp_path / "data", tiny.MOVIES_16, users=24, per_user=8, genres=GENRES)
    paths = {"root": tmp_path, "ckpt": tiny_ckpt, "data": data}
    methods = """
[[methods]]
name = "sft"

[[methods]]
name = "sprec"
set = { "sprec.iterations" = 1, "sprec.samples" = 16, "sprec.lr" = 0.01, "sprec.warmup_steps" = 0 }
"""
    cfg = write_compare(paths, tmp_path / "cmp.toml", methods)
    out = tmp_path / "out"
    assert main(["compare", str(cfg), "--out", str(out)]) == 0
    table = json.loads((out / "comparison.json").read_text())
    rows = table["methods"]
    assert set(rows) >= {"sft", "sprec"} and rows["sprec"]["paired_vs_reference"]
    sft_run, sprec_run = out / "seed-0" / "sft", out / "seed-0" / "sprec"
    timing = json.loads((sprec_run / "metrics.json").read_text())["timing"]
    assert rows["sprec"]["train_seconds"] == pytest.approx(timing["train"] + timing["sprec"])
    sft_pred = (sft_run / "predictions" / "llm.jsonl").read_text()
    assert (sprec_run / "predictions" / "llm.jsonl").read_text() != sft_pred  # it trained further
    assert main(["audit", str(sprec_run), *[a for s in QUICK for a in ("--set", s)]]) == 0
    audit = json.loads((sprec_run / "audit" / "audit.json").read_text())
    assert "fairness_llm" in json.dumps(audit) and "mgu" in json.dumps(audit)


def test_torchrun_with_two_processes_matches_one_process(tmp_path, tiny_ckpt, table_data):
    """Rank 0 decodes and broadcasts the rejected items; every phase runs on the trainer."""
    import subprocess
    import sys

    import torch
    from safetensors.torch import load_file

    cfg = write_config(
        tmp_path, tiny_ckpt, table_data, SPREC.replace("iterations = 2", "iterations = 1")
    )
    args = ["run", str(cfg), "--set", "train.grad_accum=2", "--set", "train.micro_batch_size=4"]
    assert main([*args, "--run-dir", str(tmp_path / "single")]) == 0
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
           "--master_port", "29541", "-m", "recbias.cli", *args, "--run-dir", str(tmp_path / "ddp")]  # fmt: skip
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=300, check=False)
    assert res.returncode == 0, res.stderr[-3000:]
    one = load_file(tmp_path / "single" / "model" / "model.safetensors")
    two = load_file(tmp_path / "ddp" / "model" / "model.safetensors")
    for name, value in one.items():
        torch.testing.assert_close(two[name], value, atol=1e-5, rtol=1e-4, msg=name)
    a, b = (json.loads((tmp_path / d / "metrics.json").read_text()) for d in ("single", "ddp"))
    (ia,), (ib,) = a["training"]["sprec"]["iterations"], b["training"]["sprec"]["iterations"]
    assert ia["pairs"] == ib["pairs"] and ia["dpo_steps"] == ib["dpo_steps"]
