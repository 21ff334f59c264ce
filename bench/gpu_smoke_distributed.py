"""CUDA/NCCL smoke check of DDP, FSDP2 and sharded decoding on a tiny random Llama.

Run under torchrun (one process per GPU, at most 2); ``bench/gpu_smoke_distributed.sh`` does:

    torchrun --nproc_per_node 1 bench/gpu_smoke_distributed.py --out $OUT
    python bench/gpu_smoke_distributed.py --make-run-inputs $OUT/inputs   # for the CLI runs

Trains the same model under ``parallel`` = none (the reference), ddp and fsdp, full and LoRA, in
fp32 and (where the GPU supports it) bf16, and decodes 11 prompts before and after training
inside ``full_weights``. Prints the largest relative weight difference against the reference and
whether the decoded lists agree; writes ``OUT/gpu_smoke_distributed.json`` (rank 0). Exits 1 if an
fp32 difference exceeds 1e-4 or the decoded items differ.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))  # tiny.py / dist_helpers.py: download-free tiny models

import dist_helpers as dh  # noqa: E402
import tiny  # noqa: E402
from recbias.lm.batching import encode_samples  # noqa: E402
from recbias.lm.loading import LoraSettings, add_lora  # noqa: E402
from recbias.objectives import ObjectiveConfig, build_objective  # noqa: E402
from recbias.train import distributed  # noqa: E402
from recbias.train.checkpoint import trainable_state  # noqa: E402
from recbias.train.loop import TrainConfig, Trainer  # noqa: E402


def run(parallel: str, lora: bool, dtype: str, device: torch.device, out: Path) -> dict:
    """Train 2 epochs, decode before/after; full trainable weights and lists (rank 0)."""
    tok = tiny.byte_level_tokenizer()
    model = tiny.tiny_llama(len(tok), seed=1, hidden=64)
    if lora:
        model = add_lora(model, LoraSettings(r=4, alpha=8, dropout=0.1))
    model.to(device)
    cfg = TrainConfig(epochs=2, lr=1e-2, warmup_steps=1, micro_batch_size=2, grad_accum=3,
                      max_grad_norm=0.5, parallel=parallel, share_prompt_prefix=False)  # fmt: skip
    trainer = Trainer(model, build_objective(ObjectiveConfig()), cfg, out / parallel,
                      tok.pad_token_id, 0, dtype)  # fmt: skip
    rec, valid = dh.recommender(model, tok), dh.frame(11, seed=5)
    lists = []
    for phase in ("before", "after"):
        if phase == "after":
            t0 = time.perf_counter()
            trainer.fit(encode_samples(dh.builder(tok), dh.frame(), dh.TITLES, 512), None)
            seconds = time.perf_counter() - t0
        with distributed.full_weights(model):
            r = rec.recommend(valid, 4)
        lists.append(r.items.tolist())
    weights = {k: v.detach().float().cpu() for k, v in trainable_state(model).items()}
    return {"weights": weights, "lists": lists, "seconds": seconds,
            "wrapper": type(trainer.forward).__name__}  # fmt: skip


def max_rel(a: dict, b: dict) -> float:
    return max(float(((a[k] - b[k]).abs() / b[k].abs().clamp_min(1e-6)).max()) for k in b)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--out", type=Path, default=Path("bench/results"))
    p.add_argument("--make-run-inputs", type=Path, help="write a tiny checkpoint, data, config")
    args = p.parse_args()
    if args.make_run_inputs:
        make_run_inputs(args.make_run_inputs)
        return 0
    device = distributed.init_from_env() or torch.device(
        "cuda" if torch.cuda.is_available() else "cpu"
    )
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    dtypes = ["fp32"] + (
        ["bf16"] if device.type == "cuda" and torch.cuda.is_bf16_supported() else []
    )
    results, ok = [], True
    for dtype in dtypes:
        for lora in (False, True):
            ref = (
                run("none", lora, dtype, device, args.out / "smoke")
                if distributed.rank_and_world()[1] == 1
                else None
            )
            for parallel in ("ddp", "fsdp"):
                got = run(parallel, lora, dtype, device, args.out / "smoke")
                row = {"dtype": dtype, "lora": lora, "parallel": parallel,
                       "wrapper": got["wrapper"], "train_s": round(got["seconds"], 2)}  # fmt: skip
                if ref is not None and distributed.is_main():
                    row["max_rel_weight_diff"] = max_rel(got["weights"], ref["weights"])
                    row["same_lists"] = got["lists"] == ref["lists"]
                    if dtype == "fp32":
                        ok &= row["max_rel_weight_diff"] < 1e-4 and row["same_lists"]
                results.append(row)
                if distributed.is_main():
                    print(json.dumps(row), flush=True)
    if distributed.is_main():
        info = {"device": torch.cuda.get_device_name() if device.type == "cuda" else "cpu",
                "torch": torch.__version__, "world": distributed.rank_and_world()[1],
                "backend": torch.distributed.get_backend() if distributed.initialized() else None,
                "ok": ok, "rows": results}  # fmt: skip
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "gpu_smoke_distributed.json").write_text(json.dumps(info, indent=2))
        print("OK" if ok else "MISMATCH", flush=True)
    distributed.shutdown()
    return 0 if ok else 1


def make_run_inputs(root: Path) -> None:
    """A tiny checkpoint, a 16-user CSV dataset and a run config (``root/exp.toml``)."""
    import numpy as np

    root.mkdir(parents=True, exist_ok=True)
    tok = tiny.byte_level_tokenizer()
    tiny.tiny_llama(len(tok), seed=3, hidden=64).save_pretrained(root / "ckpt")
    tok.save_pretrained(root / "ckpt")
    titles = [*dh.TITLES, "Babe", "Balto", "Nixon", "Othello", "Sabrina", "Jumanji", "Clueless"]
    rng, rows, t = np.random.default_rng(0), ["user_id,item_id,timestamp"], 1_000_000
    for user in range(16):
        for item in rng.choice(len(titles), size=8, replace=False):
            t += int(rng.integers(1, 100))
            rows.append(f"u{user},i{item},{t}")
    (root / "inter.csv").write_text("\n".join(rows) + "\n")
    items = ["item_id,title"] + [f'i{i},"{title}"' for i, title in enumerate(titles)]
    (root / "items.csv").write_text("\n".join(items) + "\n")
    (root / "exp.toml").write_text(f"""
name = "smoke"
output_dir = "{root / "runs"}"
[data]
cache_dir = "{root / "cache"}"
[data.source]
kind = "table"
interactions = "{root / "inter.csv"}"
items = "{root / "items.csv"}"
[data.prepare]
kcore = 2
[model]
path = "{root / "ckpt"}"
dtype = "fp32"
[train]
epochs = 1
lr = 0.01
warmup_steps = 0
micro_batch_size = 4
grad_accum = 2
[decode.beam]
num_beams = 5
batch_size = 4
[eval]
ks = [1, 5]
bootstrap = 20
""")


if __name__ == "__main__":
    sys.exit(main())
