"""End-to-end: a run resolves ``model.dtype = "auto"`` once and records it; ``train.epochs = 0``
decodes with the base model."""

from __future__ import annotations

import json
import tomllib

import pytest

import test_cli
from recbias import hardware
from recbias.cli import main
from recbias.hardware import Probe

# the tiny checkpoint and CSV dataset of the CLI tests
write_config = test_cli.write_config  # tiny_ckpt and table_data come from conftest


def _fake_cpu(monkeypatch, bf16_gflops: float) -> None:
    probe = Probe("cpu", 50.0, bf16_gflops, ("amx_bf16",), False)
    monkeypatch.setattr(hardware, "_PROBES", {"cpu": probe})


@pytest.mark.parametrize(("bf16_gflops", "expected"), [(200.0, "bf16"), (5.0, "fp32")])
def test_auto_dtype_is_resolved_into_config_and_environment(
    tmp_path, tiny_ckpt, table_data, monkeypatch, bf16_gflops, expected
):
    _fake_cpu(monkeypatch, bf16_gflops)
    cfg = write_config(tmp_path, tiny_ckpt, table_data)
    cfg.write_text(cfg.read_text().replace('dtype = "fp32"', 'dtype = "auto"'))
    run = tmp_path / "run"
    assert main(["run", str(cfg), "--run-dir", str(run), "--set", "train.epochs=1"]) == 0
    resolved = tomllib.loads((run / "config.toml").read_text())
    assert resolved["model"]["dtype"] == expected
    env = json.loads((run / "environment.json").read_text())
    assert env["dtype"] == expected
    assert env["dtype_probes"]["cpu"]["auto"] == expected
    assert env["dtype_probes"]["cpu"]["bf16_gflops"] == bf16_gflops
    assert (env["processes"], env["parallel"]) == (1, "none")


@pytest.mark.parametrize("finetune", ["full", "lora"])
def test_zero_epochs_decodes_with_the_base_model(tmp_path, tiny_ckpt, table_data, capsys, finetune):
    lora = '[model.lora]\ntarget_modules = ["q_proj", "v_proj"]'
    cfg = write_config(tmp_path, tiny_ckpt, table_data, lora if finetune == "lora" else "")
    cfg.write_text(
        cfg.read_text().replace('dtype = "fp32"', f'dtype = "fp32"\nfinetune = "{finetune}"')
    )
    run = tmp_path / "run"
    assert main(["run", str(cfg), "--run-dir", str(run), "--set", "train.epochs=0"]) == 0
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["training"] == {}
    assert metrics["metrics"]["methods"]["llm"]["valid_ratio"] == 1.0
    assert not (run / "train_log.jsonl").exists()
    lines = (run / "predictions" / "llm.jsonl").read_text().splitlines()
    assert lines and all(len(json.loads(line)["items"]) == 5 for line in lines)
    # a later `recbias recommend` on that run also decodes with the base model
    argv = ["recommend", str(cfg), "--run-dir", str(run), "--split", "valid"]
    capsys.readouterr()
    assert main([*argv, "--set", "train.epochs=0"]) == 0
    assert "| llm |" in capsys.readouterr().out
