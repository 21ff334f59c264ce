"""End-to-end check of bench/bench_gpu.py in its tiny CPU mode (structure and agreement only)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import tiny
from recbias.objectives import registered

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "bench"))


def test_bench_gpu_tiny_mode_runs_every_part(tmp_path):
    import bench_gpu

    tok_dir = tmp_path / "tok"
    tiny.byte_level_tokenizer().save_pretrained(tok_dir)
    out = tmp_path / "gpu.json"
    bench_gpu.main(["--tiny", "--tokenizer", str(tok_dir), "--out", str(out), "--commit", "abc"])
    result = json.loads(out.read_text())
    env = result["environment"]
    assert env["commit"] == "abc" and env["torch"] and env["transformers"]
    assert env["bf16_matmul_peak_tflops"] > 0
    shape = result["tiny"]
    train = shape["train"]
    for key in ("tokens_per_s", "hf_trainer_tokens_per_s", "mfu", "hf_trainer_mfu"):
        assert train[key] > 0
    assert (
        train["speedup_vs_hf_trainer"] == train["tokens_per_s"] / train["hf_trainer_tokens_per_s"]
    )
    decode = shape["decode"]
    assert decode["users_per_s"] > 0 and decode["hf_users_per_s"] > 0
    agree = decode["agreement_fp32"]
    assert agree["users"] == 6
    # fp32, the same trie and beam width: the lists differ at most at float near-ties
    assert agree["mismatch_other"] == 0 and agree["mean_overlap"] >= 0.9
    ratios = shape["objectives"]["step_time_vs_sft"]
    assert set(ratios) == set(registered())
    assert ratios["sft"] > 0 and all(r > 0 for r in ratios.values())
    assert len(shape["objectives"]["tokens_per_s"]["sft"]) == 3  # first, middle and last
    assert set(train["passes_tokens_per_s"]) == {"recbias", "hf_trainer"}
