"""The CLI under torchrun / accelerate launch (2 CPU processes, gloo) gives the one-process files."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

import tiny
from dist_helpers import free_port
from recbias.cli import main
from test_audit import QUICK, _config, _data

ROOT = Path(__file__).resolve().parents[1]
BATCH = ["--set", "decode.beam.batch_size=3"]  # several decoding batches per rank
AUDIT = [*(a for s in QUICK for a in ("--set", s)), "--set", "attribution.sample_chunk=2"]


def launch(*args: str, launcher: str = "torchrun", options: tuple[str, ...] = ()) -> None:
    """``recbias ARGS`` in 2 processes (``options``: accelerate's mode, default --multi_gpu);
    fails with the processes' stderr."""
    port = str(free_port())
    if launcher == "torchrun":
        cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
               "--master_port", port]  # fmt: skip
    else:
        cmd = [sys.executable, "-m", "accelerate.commands.launch", *(options or ["--multi_gpu"]),
               "--num_processes", "2", "--num_machines", "1", "--mixed_precision", "no",
               "--dynamo_backend", "no", "--main_process_port", port]  # fmt: skip
    env = dict(os.environ, OMP_NUM_THREADS="1")
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT / "src"), env.get("PYTHONPATH", "")])
    res = subprocess.run(
        [*cmd, "-m", "recbias.cli", *args], capture_output=True, text=True, env=env, timeout=600
    )
    assert res.returncode == 0, res.stderr[-4000:]


def files(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*")}


@pytest.fixture(scope="module")
def single(tmp_path_factory) -> tuple[Path, Path]:
    """(config, run directory) of a one-process run of the tiny model."""
    root = tmp_path_factory.mktemp("dist_cli")
    tok = tiny.byte_level_tokenizer()
    tiny.tiny_llama(len(tok), seed=3).save_pretrained(root / "ckpt")
    tok.save_pretrained(root / "ckpt")
    (root / "data").mkdir()
    cfg = _config(root, root / "ckpt", _data(root / "data"))
    assert main(["run", str(cfg), "--run-dir", str(root / "run"), *BATCH]) == 0
    return cfg, root / "run"


def test_recommend_under_torchrun_writes_the_same_bytes(single, tmp_path):
    cfg, run = single
    two = tmp_path / "run"
    shutil.copytree(run, two)
    shutil.rmtree(two / "predictions")
    launch("recommend", str(cfg), "--run-dir", str(two), *BATCH)
    for name in ("llm.jsonl", "popularity.jsonl"):
        assert (two / "predictions" / name).read_bytes() == (
            run / "predictions" / name
        ).read_bytes()
    assert files(two) == files(run)  # no stray or half-written files from other ranks


def test_d3_and_the_sasrec_baseline_under_torchrun_write_the_same_bytes(single, tmp_path):
    """Every rank decodes with rank 0's SASRec assistant; the baseline (rank 0 only) reuses it."""
    cfg, run = single
    d3 = ['decode.calibration=["d3"]', 'decode.d3.assistant="sasrec"', "decode.d3.guidance=0.5",
          "baselines.sasrec.epochs=2", "baselines.sasrec.hidden=16", "baselines.sasrec.dtype=fp32",
          'eval.baselines=["popularity", "sasrec"]']  # fmt: skip
    sets = [*BATCH, *(a for s in d3 for a in ("--set", s))]
    dirs = {n: tmp_path / n for n in ("one", "two")}
    for d in dirs.values():
        shutil.copytree(run, d, ignore=lambda _d, names: ["predictions"])
    assert main(["recommend", str(cfg), "--run-dir", str(dirs["one"]), *sets]) == 0
    launch("recommend", str(cfg), "--run-dir", str(dirs["two"]), *sets)
    for name in ("llm.jsonl", "sasrec.jsonl"):
        one, two = (dirs[n] / "predictions" / name for n in ("one", "two"))
        assert two.read_bytes() == one.read_bytes()
    assert (dirs["two"] / "sasrec.pt").is_file()
    assert files(dirs["two"]) == files(dirs["one"])


def test_audit_under_torchrun_gives_the_one_process_tables(single, tmp_path):
    _, run = single
    only = ["--only", "attribution,sensitivity,curves"]
    assert main(["audit", str(run), *AUDIT, *only, "--out", str(tmp_path / "one")]) == 0
    launch("audit", str(run), *AUDIT, *only, "--out", str(tmp_path / "two"))
    one, two = tmp_path / "one" / "data", tmp_path / "two" / "data"
    assert files(one) == files(two) and any(p.name.startswith("attribution") for p in one.iterdir())
    for path in one.iterdir():
        assert (two / path.name).read_bytes() == path.read_bytes(), path.name


@pytest.mark.parametrize("launcher", ["torchrun", "accelerate"])
def test_fsdp_run_matches_one_process(single, tmp_path, launcher):
    cfg, run = single
    two = tmp_path / "fsdp"
    if launcher == "torchrun":
        launch("run", str(cfg), "--run-dir", str(two), *BATCH, "--set", "train.parallel=fsdp")
    else:  # train.parallel = "auto" follows accelerate's --use_fsdp
        launch("run", str(cfg), "--run-dir", str(two), *BATCH, launcher=launcher,
               options=("--use_fsdp", "--fsdp_version", "2"))  # fmt: skip
    env = json.loads((two / "environment.json").read_text())
    assert (env["processes"], env["parallel"]) == (2, "fsdp")
    one, got = (
        load_file(run / "model" / "model.safetensors"),
        load_file(two / "model" / "model.safetensors"),
    )
    assert got.keys() == one.keys()
    for name, value in one.items():
        torch.testing.assert_close(got[name], value, rtol=1e-4, atol=1e-5, msg=name)
    assert files(two) - {"audit"} >= {
        "metrics.json",
        "predictions/llm.jsonl",
        "checkpoints/last/weights.pt",
    }
    assert not (cfg.parent / "runs").exists()  # no rank made a run directory of its own
    if launcher == "torchrun":  # --resume re-shards the consolidated checkpoint: same lists
        before = (two / "predictions" / "llm.jsonl").read_bytes()
        launch("run", str(cfg), "--run-dir", str(two), *BATCH, "--set", "train.parallel=fsdp",
               "--resume")  # fmt: skip
        assert (two / "predictions" / "llm.jsonl").read_bytes() == before


def test_compare_under_torchrun_matches_one_process(tmp_path, tiny_ckpt, table_data):
    import json

    from test_compare import write_config

    methods = '[[methods]]\nname = "sft"\n[[methods]]\nname = "lp0"\nreuse_model_of = "sft"\n'
    methods += 'set = { "decode.beam.length_penalty" = 0.0 }\n'
    paths = {"root": tmp_path, "ckpt": tiny_ckpt, "data": table_data}
    cfg = write_config(paths, tmp_path / "cmp.toml", methods)
    assert main(["compare", str(cfg), "--out", str(tmp_path / "one")]) == 0
    launch("compare", str(cfg), "--out", str(tmp_path / "two"))
    assert files(tmp_path / "one") == files(tmp_path / "two")
    for method in ("sft", "lp0"):
        rows = [
            [json.loads(line)["items"] for line in (tmp_path / d / "seed-0" / method
             / "predictions" / "llm.jsonl").read_text().splitlines()] for d in ("one", "two")
        ]  # fmt: skip
        assert rows[0] == rows[1]


def test_prefixmem_fsdp_run_saves_the_one_process_encoder(tmp_path, tiny_ckpt, table_data):
    from recbias.sidllm.prefixmem_attach import WEIGHTS_FILE
    from test_sidllm_cli import PREFIXMEM, SID, write_config

    items = SID.format(representation="sid").replace(
        "[items.sid]", 'encoder = "prefixmem"\n[items.sid]'
    )
    cfg = write_config(tmp_path, tiny_ckpt, table_data, items + PREFIXMEM)
    one, two = tmp_path / "one", tmp_path / "two"
    assert main(["run", str(cfg), "--run-dir", str(one), *BATCH]) == 0
    launch("run", str(cfg), "--run-dir", str(two), *BATCH, "--set", "train.parallel=fsdp")
    for name in (WEIGHTS_FILE, "model.safetensors"):
        want, got = load_file(one / "model" / name), load_file(two / "model" / name)
        assert got.keys() == want.keys()
        for key, value in want.items():
            torch.testing.assert_close(got[key], value, rtol=1e-4, atol=1e-5, msg=key)
    assert load_file(two / "model" / WEIGHTS_FILE)["out.weight"].abs().sum() > 0
    assert files(two) - {"audit"} >= {"predictions/llm.jsonl", "metrics.json"}
    before = (two / "predictions" / "llm.jsonl").read_bytes()  # decoded by 2 ranks
    assert main(["recommend", str(cfg), "--run-dir", str(two), *BATCH]) == 0  # reloads it
    assert (two / "predictions" / "llm.jsonl").read_bytes() == before
