"""GPU throughput: recbias's training loop vs HF ``Trainer``, its constrained beam search vs HF
``generate``, and every objective's step time relative to SFT, in one process.

    # on a CUDA machine (SmolLM2 tokenizer and ML-100K from the local cache, or given here)
    python bench/bench_gpu.py --tokenizer DIR --ml100k DIR --out gpu.json
    # end-to-end smoke on CPU (tiny shapes, synthetic titles; structure only, not a timing)
    python bench/bench_gpu.py --tiny --tokenizer DIR --out tiny.json

Models are randomly initialised from an architecture config (no weights): SmolLM2-135M's shape and
a ~1.4B Qwen2.5-1.5B-shaped Llama (hidden 1536, 28 layers, 12/2 heads, MLP 8960), both with the
tokenizer's vocabulary and tied embeddings. Training: full fine-tuning, bf16 autocast over fp32
master weights, fused AdamW, the same micro-batches in the same order on both sides; tokens/s
counts real (non-pad) tokens between the end of the warm-up steps and the last step. MFU divides
the model FLOPs (6·N_non-embedding per token + causal attention 6·L·h·len per token + the LM head
6·V·h per supervised token; the same count for both sides) by the bf16 matmul peak measured here.
On CUDA the loop computes every row's prompt in full (prefix sharing is for CPUs), so MFU counts
executed FLOPs there; on CPU the shared prefix is computed once and MFU overstates the hardware's.
Decoding: beam 10 over the item trie of every ML-100K title, users/s in the model dtype (bf16 on
CUDA), and top-10 agreement with HF in fp32 on a subset. Objectives: the same batches, steps and
model per objective; SFT runs first and last and the ratios use their mean.
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import time
import traceback
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import torch
import transformers

sys.path.insert(0, str(Path(__file__).parent))
from gpu_common import free, load_data, matmul_peak
from gpu_decode import bench_decoding
from gpu_train import bench_objectives, bench_training
from recbias.fsutil import write_json


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--tiny", action="store_true", help="tiny shapes, synthetic titles (CPU smoke)")
    p.add_argument("--shapes", default="smollm2-135m,qwen-1.5b", help="comma-separated shapes")
    p.add_argument("--parts", default="train,decode,objectives")
    p.add_argument("--tokenizer", type=Path, help="tokenizer dir (default: embedded SmolLM2)")
    p.add_argument("--ml100k", type=Path, help="dir with ml-100k.inter/.item (default: cache)")
    p.add_argument("--train-samples", type=int, default=8192)
    p.add_argument("--micro-batch", type=int, help="samples per step (default: per shape)")
    p.add_argument("--steps", type=int, default=12, help="training steps timed, after warm-up")
    p.add_argument("--warmup", type=int, default=3, help="untimed first steps")
    p.add_argument("--repeats", type=int, default=2, help="alternating passes of each side")
    p.add_argument("--objectives", default="all", help="comma-separated names, or all")
    p.add_argument("--objective-steps", type=int, default=15)
    p.add_argument("--users", type=int, default=1000, help="users decoded by recbias")
    p.add_argument("--hf-users", type=int, default=256, help="users decoded by HF generate")
    p.add_argument("--agree-users", type=int, default=64, help="users compared in fp32")
    p.add_argument("--beams", type=int, default=10)
    p.add_argument(
        "--decode-batch",
        default="500,1000",
        help="prompts per batch of recbias's search over --users, comma-separated",
    )
    p.add_argument(
        "--hf-batch",
        default="64,256",
        help="prompts per generate call (HF), comma-separated; recbias is timed at each too",
    )
    p.add_argument(
        "--compile",
        default="",
        help="shapes (comma-separated, or all) also timed with train.compile = true",
    )
    p.add_argument("--commit", default=None, help="commit to record (default: git, if any)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, default=Path("bench/results/gpu.json"))
    args = p.parse_args(argv)
    if args.tiny:
        args.shapes = "tiny"
        args.train_samples, args.users = min(args.train_samples, 48), min(args.users, 8)
        args.hf_users, args.agree_users = min(args.hf_users, 6), min(args.agree_users, 6)
        args.steps, args.warmup, args.objective_steps, args.repeats = 3, 1, 2, 1
        args.decode_batch, args.hf_batch = "4", "3"
    return args


# -- run ----------------------------------------------------------------------------------------
def environment(args: argparse.Namespace, device: torch.device, peak: float) -> dict[str, Any]:
    commit = args.commit
    if commit is None:
        try:
            commit = subprocess.run(
                ["git", "rev-parse", "HEAD"], capture_output=True, text=True, check=True
            ).stdout.strip()
        except (OSError, subprocess.CalledProcessError):
            commit = "unknown"
    return {
        "device": torch.cuda.get_device_name(device)
        if device.type == "cuda"
        else platform.processor() or platform.machine(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "transformers": transformers.__version__,
        "commit": commit,
        "bf16_matmul_peak_tflops": peak / 1e12,
        "date": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()),
    }


def guarded(job: Callable[[], dict[str, Any]], name: str, strict: bool) -> dict[str, Any]:
    """Run one part; a failure is recorded (and printed) instead of losing the other parts.
    ``strict`` (tiny mode, the unit test) lets it raise."""
    try:
        return job()
    except Exception as exc:
        if strict:
            raise
        traceback.print_exc()
        print(f"[{name}] FAILED: {type(exc).__name__}: {exc}", flush=True)
        return {"error": f"{type(exc).__name__}: {exc}"}


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    parts = set(args.parts.split(","))
    data = load_data(args)
    peak = matmul_peak(device)
    env = environment(args, device, peak)
    print(
        f"{env['device']} | torch {env['torch']} (CUDA {env['cuda']}) | transformers "
        f"{env['transformers']} | commit {env['commit']} | bf16 matmul {env['bf16_matmul_peak_tflops']:.0f} TFLOP/s"
        f" | {len(data.samples)} training samples, {data.trie.n_items} items",
        flush=True,
    )
    result: dict[str, Any] = {
        "environment": env,
        "args": {k: str(v) for k, v in vars(args).items()},
    }
    tmp = Path(os.environ.get("TMPDIR", "/tmp")) / "recbias_bench_gpu"
    for i, shape in enumerate(args.shapes.split(",")):
        result[shape] = out = {}
        jobs = {
            "train": partial(bench_training, shape, data, args, device, peak, tmp),
            "decode": partial(bench_decoding, shape, data, args, device),
            "objectives": partial(bench_objectives, shape, data, args, device, tmp),
        }
        for part, job in jobs.items():
            if part in parts and (part == "train" or i == 0):
                out[part] = guarded(job, f"{part} {shape}", args.tiny)
                free(device)
                write_json(args.out, result)  # after every part: a time-out keeps what finished
    print(f"wrote {args.out}")
    return result


if __name__ == "__main__":
    main()
