"""End-to-end runs of the CLI on a tiny local checkpoint and a small CSV dataset."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from recbias.cli import main


def write_config(tmp_path: Path, ckpt: Path, data: Path, extra: str = "") -> Path:
    cfg = tmp_path / "exp.toml"
    cfg.write_text(f"""
name = "tiny"
seed = 0
output_dir = "{tmp_path / "runs"}"
threads = 1
[data]
cache_dir = "{tmp_path / "cache"}"
[data.source]
kind = "table"
interactions = "{data / "inter.csv"}"
items = "{data / "items.csv"}"
[data.prepare]
kcore = 2
[model]
path = "{ckpt}"
dtype = "fp32"
[train]
epochs = 2
lr = 0.01
warmup_steps = 0
micro_batch_size = 8
grad_accum = 1
[decode.beam]
num_beams = 5
[eval]
ks = [1, 5, 10]
bootstrap = 50
{extra}
""")
    return cfg


def test_run_writes_a_complete_run_directory(tmp_path, tiny_ckpt, table_data, capsys):
    cfg = write_config(tmp_path, tiny_ckpt, table_data)
    run = tmp_path / "run"
    assert main(["run", str(cfg), "--run-dir", str(run)]) == 0
    for name in [
        "config.toml",
        "environment.json",
        "metrics.json",
        "summary.md",
        "train_log.jsonl",
        "predictions/llm.jsonl",
        "predictions/popularity.jsonl",
        "predictions/llm.peer.json",
        "model/config.json",
        "checkpoints/last/state.json",
    ]:
        assert (run / name).exists(), name
    metrics = json.loads((run / "metrics.json").read_text())
    llm = metrics["metrics"]["methods"]["llm"]
    assert llm["valid_ratio"] == 1.0
    assert 0.0 <= llm["NDCG@10"]["lo"] <= llm["NDCG@10"]["mean"] <= llm["NDCG@10"]["hi"] <= 1.0
    share = metrics["training"]["zero_ig_token_share"]
    assert 0.0 < share < 1.0  # the terminator and EOS are always forced; first tokens are not
    env = json.loads((run / "environment.json").read_text())
    assert env["seed"] == 0 and env["packages"]["torch"]
    assert "| llm |" in capsys.readouterr().out


def test_same_config_and_seed_give_the_same_numbers(tmp_path, tiny_ckpt, table_data):
    cfg = write_config(tmp_path, tiny_ckpt, table_data)
    results = []
    for name in ("a", "b"):
        assert main(["run", str(cfg), "--run-dir", str(tmp_path / name)]) == 0
        results.append(json.loads((tmp_path / name / "metrics.json").read_text())["metrics"])
    assert results[0] == results[1]
    pa = (tmp_path / "a/predictions/llm.jsonl").read_text()
    assert pa == (tmp_path / "b/predictions/llm.jsonl").read_text()


def test_recommend_and_evaluate_reuse_a_trained_run(tmp_path, tiny_ckpt, table_data, capsys):
    cfg = write_config(tmp_path, tiny_ckpt, table_data, "")
    run = tmp_path / "run"
    assert main(["train", str(cfg), "--run-dir", str(run)]) == 0
    assert main(["recommend", str(cfg), "--run-dir", str(run), "--split", "valid"]) == 0
    preds = run / "predictions" / "llm.jsonl"
    other = run / "predictions" / "popularity.jsonl"
    assert main(["evaluate", str(preds), "--compare", str(other), "--ks", "1,5"]) == 0
    out = capsys.readouterr().out
    assert "NDCG@5" in out and "p =" in out


def _error(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert "Traceback" not in err
    return err


def test_config_typo_is_a_one_line_error(tmp_path, tiny_ckpt, table_data, capsys):
    cfg = write_config(tmp_path, tiny_ckpt, table_data, "[train.objective]\nnmae = 'sft'\n")
    assert main(["run", str(cfg)]) == 2
    err = _error(capsys)
    assert "train.objective.nmae" in err and "did you mean 'name'" in err
    assert not (tmp_path / "runs").exists()


def test_missing_checkpoint_directory(tmp_path, table_data, capsys):
    cfg = write_config(tmp_path, tmp_path / "no-such-model", table_data)
    run = tmp_path / "run"
    assert main(["run", str(cfg), "--run-dir", str(run)]) == 2
    assert "no-such-model' does not exist" in _error(capsys)
    assert not run.exists()


def test_prompt_longer_than_context(tmp_path, tiny_ckpt, table_data, capsys):
    cfg = write_config(tmp_path, tiny_ckpt, table_data)
    run = tmp_path / "run"
    assert main(["run", str(cfg), "--run-dir", str(run), "--set", "model.max_length=40"]) == 2
    assert "longer than the model's context of 40" in _error(capsys)
    assert not run.exists()


def test_debug_shows_the_traceback(tmp_path, tiny_ckpt, table_data):
    from recbias.errors import ConfigError

    cfg = write_config(tmp_path, tiny_ckpt, table_data, "[train.objective]\nnmae = 'sft'\n")
    with pytest.raises(ConfigError):
        main(["--debug", "run", str(cfg)])


def test_resume_needs_a_run_dir(tmp_path, tiny_ckpt, table_data, capsys):
    cfg = write_config(tmp_path, tiny_ckpt, table_data)
    assert main(["run", str(cfg), "--resume"]) == 2
    assert "--resume needs --run-dir" in _error(capsys)


def test_resume_finishes_a_killed_run_with_the_same_numbers(tmp_path, tiny_ckpt, table_data):
    from recbias import pipeline
    from recbias.config import load_config
    from recbias.experiment import RunConfig
    from recbias.train import loop

    cfg_path = write_config(tmp_path, tiny_ckpt, table_data, "")
    full = tmp_path / "full"
    assert (
        main(["run", str(cfg_path), "--run-dir", str(full), "--set", "train.checkpoint_every=1"])
        == 0
    )
    killed = tmp_path / "killed"
    original = loop.Trainer.fit

    def killed_fit(self, samples, validate, resume=False, stop_after_steps=None):
        original(self, samples, validate, resume, stop_after_steps=3)
        raise KeyboardInterrupt

    cfg = load_config(RunConfig, cfg_path, ["train.checkpoint_every=1"])
    killed.mkdir()
    loop.Trainer.fit, saved = killed_fit, loop.Trainer.fit
    try:
        with pytest.raises(KeyboardInterrupt):
            pipeline.run_experiment(cfg, killed)
    finally:
        loop.Trainer.fit = saved
    argv = [
        "run",
        str(cfg_path),
        "--run-dir",
        str(killed),
        "--resume",
        "--set",
        "train.checkpoint_every=1",
    ]
    assert main(argv) == 0
    a = json.loads((full / "metrics.json").read_text())["metrics"]
    b = json.loads((killed / "metrics.json").read_text())["metrics"]
    assert a == b


def test_lora_saves_only_the_adapter_and_recommend_reloads_it(
    tmp_path, tiny_ckpt, table_data, capsys
):
    cfg = write_config(tmp_path, tiny_ckpt, table_data)
    run = tmp_path / "lora"
    lora = [
        "--set",
        "model.finetune=lora",
        "--set",
        'model.lora.target_modules=["q_proj","v_proj"]',
    ]
    assert main(["run", str(cfg), "--run-dir", str(run), *lora]) == 0
    assert (run / "adapter" / "adapter_config.json").exists()
    assert not (run / "model").exists()
    saved = {p.name for p in (run / "adapter").iterdir()}
    assert "adapter_model.safetensors" in saved and "model.safetensors" not in saved
    before = (run / "predictions" / "llm.jsonl").read_text()
    assert main(["recommend", str(cfg), "--run-dir", str(run), *lora]) == 0
    assert (run / "predictions" / "llm.jsonl").read_text() == before


def test_recommend_without_a_trained_model_is_a_clear_error(
    tmp_path, tiny_ckpt, table_data, capsys
):
    cfg = write_config(tmp_path, tiny_ckpt, table_data)
    (tmp_path / "empty").mkdir()
    assert main(["recommend", str(cfg), "--run-dir", str(tmp_path / "empty")]) == 2
    assert "has no trained model/" in _error(capsys)


def test_torchrun_with_two_processes_matches_one_process(tmp_path, tiny_ckpt, table_data):
    import subprocess
    import sys

    import torch
    from safetensors.torch import load_file

    cfg = write_config(tmp_path, tiny_ckpt, table_data, "")
    args = ["run", str(cfg), "--set", "train.grad_accum=2", "--set", "train.micro_batch_size=4"]
    assert main([*args, "--run-dir", str(tmp_path / "single")]) == 0
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc_per_node",
        "2",
        "--master_port",
        "29533",
        "-m",
        "recbias.cli",
        *args,
        "--run-dir",
        str(tmp_path / "ddp"),
    ]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=300, check=False)
    assert res.returncode == 0, res.stderr[-3000:]
    one = load_file(tmp_path / "single" / "model" / "model.safetensors")
    two = load_file(tmp_path / "ddp" / "model" / "model.safetensors")
    for name, value in one.items():
        torch.testing.assert_close(two[name], value, atol=1e-5, rtol=1e-4, msg=name)
    a = json.loads((tmp_path / "single" / "metrics.json").read_text())["metrics"]["methods"]
    b = json.loads((tmp_path / "ddp" / "metrics.json").read_text())["metrics"]["methods"]
    assert a["llm"]["NDCG@10"]["mean"] == pytest.approx(b["llm"]["NDCG@10"]["mean"], abs=1e-6)


@pytest.mark.parametrize(
    "objective", ["sft", "gdrt", "igd", "msl", "pos", "cft", "reweight", "msl_gdrt"]
)
def test_every_objective_runs_end_to_end(tmp_path, tiny_ckpt, table_data, objective):
    cfg = write_config(tmp_path, tiny_ckpt, table_data)
    run = tmp_path / objective
    extra = ["--set", "train.objective.gdrt.groups=2"] if "gdrt" in objective else []
    argv = ["run", str(cfg), "--run-dir", str(run), "--set", f"train.objective.name={objective}"]
    assert main([*argv, *extra]) == 0
    metrics = json.loads((run / "metrics.json").read_text())["metrics"]["methods"]["llm"]
    assert metrics["valid_ratio"] == 1.0
    losses = [json.loads(line).get("loss") for line in (run / "train_log.jsonl").open()]
    assert all(np.isfinite(v) for v in losses if v is not None)


@pytest.mark.parametrize(
    "calibration",
    [
        ["--set", 'decode.calibration=["igd"]'],
        [
            "--set",
            'decode.calibration=["d3"]',
            "--set",
            "decode.d3.assistant=popularity",
            "--set",
            "decode.d3.guidance=0.7",
        ],
        [
            "--set",
            'decode.calibration=["d3", "igd"]',
            "--set",
            "decode.d3.assistant=sasrec",
            "--set",
            "decode.d3.guidance=0.5",
            "--set",
            "baselines.sasrec.epochs=2",
        ],
    ],
    ids=["igd", "d3-popularity", "d3-sasrec+igd"],
)
def test_decoding_calibrations_run_and_change_the_ranking(
    tmp_path, tiny_ckpt, table_data, calibration
):
    cfg = write_config(tmp_path, tiny_ckpt, table_data, "")
    common = [
        "--set",
        "train.epochs=1",
        "--set",
        'eval.baselines=["popularity", "sasrec"]',
        "--set",
        "baselines.sasrec.epochs=2",
    ]
    assert main(["run", str(cfg), "--run-dir", str(tmp_path / "plain"), *common]) == 0
    assert main(["run", str(cfg), "--run-dir", str(tmp_path / "cal"), *common, *calibration]) == 0
    plain = (tmp_path / "plain" / "predictions" / "llm.jsonl").read_text()
    cal = (tmp_path / "cal" / "predictions" / "llm.jsonl").read_text()
    assert plain != cal
    assert (tmp_path / "cal" / "predictions" / "sasrec.jsonl").exists()


def test_d3_without_an_assistant_is_rejected(tmp_path, tiny_ckpt, table_data, capsys):
    cfg = write_config(tmp_path, tiny_ckpt, table_data)
    assert main(["run", str(cfg), "--set", 'decode.calibration=["d3"]']) == 2
    assert "decode.d3.assistant" in _error(capsys)


def test_report_command_writes_html_and_rejects_a_non_run_directory(tmp_path, capsys):
    import json

    from recbias.cli import main

    run = tmp_path / "run"
    run.mkdir()
    row = {"mean": 0.1, "lo": 0.05, "hi": 0.15}
    metrics = {"metrics": {"methods": {"llm": {"NDCG@10": row}, "popularity": {"NDCG@10": row}}}}
    (run / "metrics.json").write_text(json.dumps(metrics))
    assert main(["report", str(run), "--out", str(tmp_path / "rep")]) == 0
    assert (tmp_path / "rep" / "report.html").is_file()
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(["report", str(empty), "--out", str(tmp_path / "rep2")]) == 2
    assert "not a recbias run" in capsys.readouterr().err
    assert not (tmp_path / "rep2").exists()


def test_simulate_and_probe_commands_write_run_dirs_the_report_renders(tmp_path):
    from recbias.cli import main

    sim, probe = tmp_path / "sim", tmp_path / "probe"
    overrides = [
        "--set",
        "loop.rounds=3",
        "--set",
        "world.n_users=200",
        "--set",
        "world.n_items=50",
    ]
    assert (
        main(["simulate", "configs/simulate_popularity.toml", "--run-dir", str(sim), *overrides])
        == 0
    )
    assert (
        main(["probe", "synthetic", "configs/probe_synthetic.toml", "--run-dir", str(probe)]) == 0
    )
    for d in (sim, probe):
        assert {"metrics.json", "sections.json", "config.toml", "environment.json"} <= {
            p.name for p in d.iterdir()
        }
    assert main(["report", str(sim), str(probe), "--out", str(tmp_path / "rep")]) == 0
    html = (tmp_path / "rep" / "report.html").read_text()
    assert "Closed-loop simulation" in html and "Prop. 4.6" in html


def test_simulate_rejects_a_delegated_share_outside_0_1(tmp_path, capsys):
    from recbias.cli import main

    args = ["simulate", "configs/simulate_popularity.toml", "--run-dir", str(tmp_path / "s")]
    assert main([*args, "--set", "loop.lambdas=[1.5]"]) == 2
    assert "loop.lambdas[0]" in capsys.readouterr().err


@pytest.mark.integration
def test_seqrec_command_runs_popularity_on_recboles_leave_one_out(tmp_path):
    import json

    from recbias.cli import main

    run = tmp_path / "seq"
    args = ["seqrec", "configs/seqrec_ml100k.toml", "--set", 'models=["popularity"]']
    assert main([*args, "--run-dir", str(run)]) == 0
    metrics = json.loads((run / "metrics.json").read_text())
    assert (
        0.0
        < metrics["models"]["popularity"]["test"]["NDCG@10"]
        < metrics["models"]["popularity"]["test"]["Recall@10"]
    )
    assert (run / "config.toml").is_file() and (run / "environment.json").is_file()
