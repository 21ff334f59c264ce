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
import copy
import gc
import os
import platform
import random
import subprocess
import sys
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from functools import partial
from pathlib import Path
from typing import Any

import pandas as pd
import torch
import transformers
from transformers import LlamaConfig, LlamaForCausalLM

sys.path.insert(0, str(Path(__file__).parent))
from bench_decoding import agreement, parse_hf
from recbias.baselines import count_items
from recbias.decoding import BeamConfig, BeamResult, ItemTrie, constrained_beam_search
from recbias.fsutil import write_json
from recbias.lm.batching import TokenizedSample, encode_samples
from recbias.objectives import ObjectiveConfig, build_objective, registered
from recbias.objectives.base import ObjectiveContext
from recbias.prompts import Domain, PromptBuilder, PromptConfig
from recbias.recommender import build_trie
from recbias.train.loop import TrainConfig, Trainer

SHAPES: dict[str, dict[str, int]] = {
    "smollm2-135m": dict(
        hidden_size=576,
        intermediate_size=1536,
        num_hidden_layers=30,
        num_attention_heads=9,
        num_key_value_heads=3,
    ),
    "qwen-1.5b": dict(
        hidden_size=1536,
        intermediate_size=8960,
        num_hidden_layers=28,
        num_attention_heads=12,
        num_key_value_heads=2,
    ),
    "tiny": dict(
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
    ),
}
MICRO_BATCH = {"smollm2-135m": 128, "qwen-1.5b": 32, "tiny": 4}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--tiny", action="store_true", help="tiny shapes, synthetic titles (CPU smoke)")
    p.add_argument("--shapes", default="smollm2-135m,qwen-1.5b", help="comma-separated shapes")
    p.add_argument("--parts", default="train,decode,objectives")
    p.add_argument("--tokenizer", type=Path, help="tokenizer dir (default: embedded SmolLM2)")
    p.add_argument("--ml100k", type=Path, help="dir with ml-100k.inter/.item (default: cache)")
    p.add_argument("--train-samples", type=int, default=4096)
    p.add_argument("--micro-batch", type=int, help="samples per step (default: per shape)")
    p.add_argument("--steps", type=int, default=14, help="training steps timed, after warm-up")
    p.add_argument("--warmup", type=int, default=3, help="untimed first steps")
    p.add_argument("--repeats", type=int, default=2, help="alternating passes of each side")
    p.add_argument("--objectives", default="all", help="comma-separated names, or all")
    p.add_argument("--objective-steps", type=int, default=20)
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


# -- data ---------------------------------------------------------------------------------------
@dataclass
class BenchData:
    builder: PromptBuilder
    titles: list[str]
    train: pd.DataFrame
    samples: list[TokenizedSample]
    prompts: list[list[int]]  # decoding prompts (ending with the response prefix)
    trie: ItemTrie
    counts: Any


def tokenizer_dir(args: argparse.Namespace) -> Path:
    if args.tokenizer is not None:
        return args.tokenizer
    from recbias.lm.embedded import checkpoint_dir

    return checkpoint_dir()


def load_data(args: argparse.Namespace) -> BenchData:
    from recbias.lm.loading import load_tokenizer

    tok = load_tokenizer(tokenizer_dir(args))
    if args.tiny:
        titles, train, test = synthetic_split(args.seed)
        domain = Domain("movie", "movies")
        prompt_cfg = PromptConfig()
    else:
        titles, train, test, domain, prompt_cfg = ml100k_split(args)
    builder = PromptBuilder(tok, prompt_cfg, domain)
    train = train.head(args.train_samples).reset_index(drop=True)
    samples = encode_samples(builder, train, titles, max_length=2048)
    prompts = [
        builder.encode([titles[int(i)] for i in h], [int(i) for i in h]).input_ids
        for h in test["history"].head(max(args.users, args.hf_users, args.agree_users))
    ]
    trie = build_trie(builder, titles, list(range(len(titles))))
    return BenchData(
        builder, titles, train, samples, prompts, trie, count_items(train, len(titles))
    )


def ml100k_split(args: argparse.Namespace):
    """The quickstart's ML-100K preparation with ``--train-samples`` training samples."""
    from recbias.config import load_config
    from recbias.experiment import RunConfig
    from recbias.pipeline import load_data as prepared

    if args.ml100k is not None:
        os.environ["RECBIAS_ML100K_DIR"] = str(args.ml100k.resolve())
    root = Path(__file__).resolve().parent.parent
    cfg = load_config(RunConfig, root / "configs" / "quickstart.toml")
    cfg.data.prepare.train_samples = args.train_samples
    cfg.data.prepare.test_samples = max(args.users, args.hf_users, args.agree_users)
    ds = prepared(cfg)
    return ds.titles, ds.split("train"), ds.split("test"), ds.domain, cfg.prompt


def synthetic_split(seed: int, n_titles: int = 40, n_users: int = 64):
    """Title-like names and users with short histories (tiny mode)."""
    rng = random.Random(seed)
    words = ["Toy", "Story", "Heat", "Wave", "Alien", "Star", "Wars", "Trek", "Casino", "Fargo"]
    titles: list[str] = []
    while len(titles) < n_titles:
        name = " ".join(rng.sample(words, rng.randint(1, 3))) + f" ({rng.randint(1950, 1999)})"
        if name not in titles:
            titles.append(name)
    rows = [
        {
            "sample_id": u,
            "user": u,
            "history": [rng.randrange(n_titles) for _ in range(rng.randint(1, 5))],
            "target": rng.randrange(n_titles),
            "timestamp": u,
        }
        for u in range(n_users)
    ]
    df = pd.DataFrame(rows)
    return titles, df, df


# -- models and peak ----------------------------------------------------------------------------
def build_model(shape: str, vocab: int, device: torch.device, seed: int) -> LlamaForCausalLM:
    torch.manual_seed(seed)
    cfg = LlamaConfig(
        **SHAPES[shape],
        vocab_size=vocab,
        tie_word_embeddings=True,
        max_position_embeddings=2048,
        bos_token_id=1,
        eos_token_id=2,
        pad_token_id=0,
    )
    cfg._attn_implementation = "sdpa"
    with device:  # initialised where it runs (a 1.5B model takes long to initialise on a CPU)
        return LlamaForCausalLM(cfg)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def matmul_peak(device: torch.device, reps: int = 10) -> float:
    """Mean FLOP/s of an n×n×n bf16 matmul on random data (n = 8192 on CUDA, 512 elsewhere)."""
    n = 8192 if device.type == "cuda" else 512
    a = torch.randn(n, n, device=device, dtype=torch.bfloat16)
    b = torch.randn(n, n, device=device, dtype=torch.bfloat16)
    for _ in range(3):
        a @ b
    sync(device)
    t0 = time.perf_counter()
    for _ in range(reps):
        a @ b
    sync(device)
    return 2 * n**3 * reps / (time.perf_counter() - t0)


def model_flops(model: LlamaForCausalLM, samples: Sequence[TokenizedSample]) -> float:
    """Training FLOPs of ``samples`` (forward + backward), the formula of the module docstring."""
    cfg = model.config
    emb = model.get_input_embeddings().weight.numel()
    body = sum(p.numel() for p in model.parameters()) - emb
    layers, hidden = cfg.num_hidden_layers, cfg.hidden_size
    total = 0.0
    for s in samples:
        n, targets = s.length, len(s.prompt.target_ids)
        total += 6 * body * n + 6 * layers * hidden * n * n + 6 * emb * targets
    return total


# -- training -----------------------------------------------------------------------------------
class StepClock:
    """Times the steps after the first ``warmup`` (a Reporter for recbias, a callback for HF).

    It waits for the device only at the end of the warm-up and at the end of the run, so it adds
    no synchronisation of its own to the steps it times.
    """

    def __init__(self, device: torch.device, warmup: int, total: int) -> None:
        self.device, self.warmup, self.total = device, warmup, total
        self.steps, self.t0, self.t1 = 0, 0.0, 0.0

    def start(self, total_steps: int, done: int) -> None:
        return None

    def advance(self, info: dict[str, Any]) -> None:
        self.steps += 1
        if self.steps in (self.warmup, self.total):
            sync(self.device)
            if self.steps == self.warmup:
                self.t0 = time.perf_counter()
            else:
                self.t1 = time.perf_counter()

    def rate(self, work: float) -> float:
        """``work`` done over the timed steps, per second."""
        if self.steps != self.total:
            raise RuntimeError(f"{self.steps} steps ran, not {self.total}")
        return work / (self.t1 - self.t0)


def step_samples(trainer: Trainer, samples, first: int, last: int) -> list[TokenizedSample]:
    groups = trainer.step_groups(samples, 0)[first:last]
    return [samples[i] for g in groups for mb in g for i in mb]


def run_recbias(
    model, objective, data, args, device, mb: int, steps: int, tmp: Path, compile=False
):
    """-> tokens/s, model FLOP/s and the samples of every step (warm-up included, in order)."""
    cfg = TrainConfig(epochs=1, micro_batch_size=mb, grad_accum=1, warmup_steps=0)
    cfg.compile = compile
    dtype = "bf16" if device.type == "cuda" else "fp32"
    clock = StepClock(device, args.warmup, args.warmup + steps)
    pad = data.builder.tokenizer.pad_token_id
    trainer = Trainer(model, objective, cfg, tmp, pad, args.seed, dtype, reporter=clock)
    total = args.warmup + steps
    if len(trainer.step_groups(data.samples, 0)) < total:
        raise SystemExit(f"{len(data.samples)} samples give fewer than {total} steps of {mb}")
    groups = trainer.step_groups(data.samples, 0)[:total]
    if any(len(g[0]) != mb for g in groups):
        raise SystemExit(f"a step has fewer than {mb} samples: use a multiple of {mb * 32} samples")
    trainer.fit(data.samples, None, stop_after_steps=total)
    timed = step_samples(trainer, data.samples, args.warmup, total)
    tokens = sum(s.length for s in timed)
    rate = clock.rate(tokens)
    order = step_samples(trainer, data.samples, 0, total)
    return rate, rate / tokens * model_flops(model, timed), order


def run_hf_trainer(model, data, args, device, mb: int, order: list[TokenizedSample], tmp: Path):
    """HF ``Trainer`` over the very micro-batches recbias trains on, in the same order."""
    from torch.utils.data import SequentialSampler
    from transformers import Trainer as HFTrainer
    from transformers import TrainerCallback, TrainingArguments

    pad = data.builder.tokenizer.pad_token_id
    rows = [
        {
            "input_ids": s.prompt.full_ids,
            "labels": [-100] * len(s.prompt.input_ids) + s.prompt.target_ids,
        }
        for s in order
    ]
    clock = StepClock(device, args.warmup, len(order) // mb)

    class Clock(TrainerCallback):
        def on_step_end(self, *a: Any, **k: Any) -> None:
            clock.advance({})

    class Sequential(HFTrainer):
        def _get_train_sampler(self, *a: Any, **k: Any):
            return SequentialSampler(self.train_dataset)

    targs = TrainingArguments(
        output_dir=str(tmp / "hf"),
        per_device_train_batch_size=mb,
        max_steps=len(rows) // mb,
        bf16=device.type == "cuda",
        use_cpu=device.type != "cuda",
        learning_rate=1e-4,
        lr_scheduler_type="linear",
        warmup_steps=0,
        optim="adamw_torch_fused" if device.type == "cuda" else "adamw_torch",
        max_grad_norm=1.0,
        report_to=[],
        save_strategy="no",
        logging_strategy="no",
        dataloader_num_workers=0,
        disable_tqdm=True,
        seed=args.seed,
    )
    trainer = Sequential(
        model=model,
        args=targs,
        train_dataset=rows,
        data_collator=lambda feats: pad_rows(feats, pad),
        callbacks=[Clock()],
    )
    trainer.train()
    timed = order[args.warmup * mb :]
    tokens = sum(s.length for s in timed)
    rate = clock.rate(tokens)
    return rate, rate / tokens * model_flops(model, timed)


def pad_rows(feats: list[dict], pad: int) -> dict[str, torch.Tensor]:
    """Right-pad ``input_ids``/``labels`` to the longest row (as recbias's collate)."""
    width = max(len(f["input_ids"]) for f in feats)
    ids = torch.full((len(feats), width), pad)
    labels = torch.full((len(feats), width), -100)
    mask = torch.zeros((len(feats), width), dtype=torch.long)
    for i, f in enumerate(feats):
        n = len(f["input_ids"])
        ids[i, :n], labels[i, :n], mask[i, :n] = (
            torch.tensor(f["input_ids"]),
            torch.tensor(f["labels"]),
            1,
        )
    return {"input_ids": ids, "labels": labels, "attention_mask": mask}


def compiled_shapes(args: argparse.Namespace) -> set[str]:
    if args.compile == "all":
        return set(args.shapes.split(","))
    return {x for x in args.compile.split(",") if x}


def bench_training(shape, data, args, device, peak, tmp: Path) -> dict[str, Any]:
    """recbias and HF ``Trainer`` alternately, ``--repeats`` times each from the same initial
    weights (so neither side gains from running later in the process); the best pass counts."""
    model = build_model(shape, len(data.builder.tokenizer), device, args.seed)
    initial = copy.deepcopy(model.state_dict())
    n_params = sum(p.numel() for p in model.parameters())
    sft = build_objective(ObjectiveConfig(name="sft"))
    mb = args.micro_batch or MICRO_BATCH[shape]
    runs: dict[str, list[float]] = {"recbias": [], "hf_trainer": []}
    flops_per_token = 0.0
    for r in range(args.repeats):
        model.load_state_dict(initial)
        rate, flops, order = run_recbias(model, sft, data, args, device, mb, args.steps, tmp / "o")
        runs["recbias"].append(rate)
        flops_per_token = flops / rate
        model.load_state_dict(initial)
        runs["hf_trainer"].append(run_hf_trainer(model, data, args, device, mb, order, tmp)[0])
        if r == 0 and shape in compiled_shapes(
            args
        ):  # train.compile = true (compilation in the warm-up steps)
            model.load_state_dict(initial)
            rate = run_recbias(model, sft, data, args, device, mb, args.steps, tmp / "c", True)[0]
            runs["recbias_compiled"] = [rate]
    del model, initial
    free(device)
    best = {k: max(v) for k, v in runs.items()}
    res = {
        "params": n_params,
        "micro_batch": mb,
        "steps_timed": args.steps,
        "mean_tokens_per_sample": sum(s.length for s in order) / len(order),
        "tokens_per_s": best["recbias"],
        "mfu": best["recbias"] * flops_per_token / peak,
        "hf_trainer_tokens_per_s": best["hf_trainer"],
        "hf_trainer_mfu": best["hf_trainer"] * flops_per_token / peak,
        "speedup_vs_hf_trainer": best["recbias"] / best["hf_trainer"],
        "passes_tokens_per_s": runs,
    }
    if "recbias_compiled" in best:
        res["compiled_tokens_per_s"] = best["recbias_compiled"]
        res["compiled_mfu"] = best["recbias_compiled"] * flops_per_token / peak
    passes = "; ".join(f"{k} " + ", ".join(f"{x:,.0f}" for x in v) for k, v in runs.items())
    print(
        f"[train {shape}] recbias {res['tokens_per_s']:,.0f} tok/s (MFU {res['mfu']:.1%}) | "
        f"HF Trainer {res['hf_trainer_tokens_per_s']:,.0f} tok/s (MFU {res['hf_trainer_mfu']:.1%})"
        f" | {res['speedup_vs_hf_trainer']:.2f}x (passes: {passes})",
        flush=True,
    )
    return res


# -- decoding -----------------------------------------------------------------------------------
def hf_generate(
    model, prompts, trie: ItemTrie, beams: int, pad: int, eos: int, table
) -> list[BeamResult]:
    from transformers import GenerationConfig

    width = max(len(p) for p in prompts)
    device = next(model.parameters()).device
    ids = torch.tensor([[pad] * (width - len(p)) + p for p in prompts], device=device)
    mask = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in prompts], device=device)
    settings = GenerationConfig(
        num_beams=beams,
        num_return_sequences=beams,
        do_sample=False,
        length_penalty=0.0,
        early_stopping=False,
        max_new_tokens=trie.max_depth,
        pad_token_id=pad,
        eos_token_id=eos,
        return_dict_in_generate=True,
        output_scores=True,
    )
    gen = model.generate(
        ids,
        attention_mask=mask,
        generation_config=settings,
        prefix_allowed_tokens_fn=trie.hf_prefix_fn(width, eos, table),
    )
    seqs, scores = gen.sequences[:, width:].tolist(), gen.sequences_scores.tolist()
    return [
        parse_hf(trie, seqs[b * beams : (b + 1) * beams], scores[b * beams : (b + 1) * beams], eos)
        for b in range(len(prompts))
    ]


def run_hf(model, prompts, trie, args, pad, eos, table, batch: int) -> list[BeamResult]:
    out: list[BeamResult] = []
    for start in range(0, len(prompts), batch):
        out += hf_generate(model, prompts[start : start + batch], trie, args.beams, pad, eos, table)
    return out


def timed(fn: Callable[[], Any], device: torch.device) -> tuple[Any, float]:
    sync(device)
    t0 = time.perf_counter()
    out = fn()
    sync(device)
    return out, time.perf_counter() - t0


def bench_decoding(shape, data, args, device) -> dict[str, Any]:
    """recbias over ``--users`` at each ``--decode-batch``; recbias and HF ``generate`` over
    ``--hf-users`` at each ``--hf-batch`` (the same prompts, batches and model); agreement in fp32."""
    model = build_model(shape, len(data.builder.tokenizer), device, args.seed).eval()
    fast = torch.bfloat16 if device.type == "cuda" else torch.float32
    pad, eos = data.builder.tokenizer.pad_token_id, terminator(data)
    big = [int(b) for b in args.decode_batch.split(",")]
    small = [int(b) for b in str(args.hf_batch).split(",")]
    cfg = BeamConfig(num_beams=args.beams, batch_size=max(big))
    trie = data.trie.to(device)
    table = trie.hf_prefix_table()
    users, hf_users = data.prompts[: args.users], data.prompts[: args.hf_users]

    def ours(prompts, batch):
        return constrained_beam_search(model, prompts, trie, replace(cfg, batch_size=batch), pad)

    rate: dict[int, float] = {}
    same: dict[int, dict[str, float]] = {}
    model.to(fast)
    with torch.inference_mode():
        ours(users, max(big))  # warm-up
        run_hf(model, hf_users[: min(small)], trie, args, pad, eos, table, min(small))
        for b in big:
            rate[b] = len(users) / timed(lambda b=b: ours(users, b), device)[1]
        for b in small:
            t_ours = timed(lambda b=b: ours(hf_users, b), device)[1]
            t_hf = timed(
                lambda b=b: run_hf(model, hf_users, trie, args, pad, eos, table, b), device
            )[1]
            same[b] = {"recbias": len(hf_users) / t_ours, "hf_generate": len(hf_users) / t_hf}
    model.float()
    with torch.inference_mode():
        few = data.prompts[: args.agree_users]
        ours32 = ours(few, max(big))
        hf32 = run_hf(model, few, trie, args, pad, eos, table, min(small))
    model.cpu()
    free(device)
    hf_best = max(v["hf_generate"] for v in same.values())
    res = {
        "items": trie.n_items,
        "trie_depth": trie.max_depth,
        "beams": args.beams,
        "dtype": str(fast).removeprefix("torch."),
        "users": len(users),
        "users_per_s": max(rate.values()),
        "batch": max(rate, key=rate.get),
        "users_per_s_by_batch": rate,
        "hf_users": len(hf_users),
        "hf_users_per_s": hf_best,
        "same_batch_users_per_s": same,
        "speedup_vs_hf_generate": max(rate.values()) / hf_best,
        "agreement_fp32": agreement(ours32, hf32, 1e-3),
    }
    a = res["agreement_fp32"]
    pairs = "; ".join(
        f"batch {b}: {v['recbias']:,.1f} vs {v['hf_generate']:,.1f} "
        f"({v['recbias'] / v['hf_generate']:.2f}x)"
        for b, v in same.items()
    )
    print(
        f"[decode {shape}] recbias {res['users_per_s']:,.1f} users/s (batch {res['batch']}; "
        + ", ".join(f"{r:,.1f} at {b}" for b, r in rate.items())
        + f") | best HF generate {hf_best:,.1f} users/s | {res['speedup_vs_hf_generate']:.2f}x"
        f" | same {len(hf_users)} users, recbias vs HF: {pairs} | fp32 top-{args.beams} "
        f"agreement: same set {a['same_set']:.1%}, same order {a['same_order']:.1%}",
        flush=True,
    )
    return res


def terminator(data: BenchData) -> int:
    return data.builder.encode_target(data.titles[0])[-1]


# -- objectives ---------------------------------------------------------------------------------
def bench_objectives(shape, data, args, device, tmp: Path) -> dict[str, Any]:
    names = registered() if args.objectives == "all" else args.objectives.split(",")
    others = [n for n in names if n != "sft"]
    half = len(others) // 2
    order = ["sft", *others[:half], "sft", *others[half:], "sft"]  # SFT's spread = the noise
    model = build_model(shape, len(data.builder.tokenizer), device, args.seed)
    rates: dict[str, list[float]] = {}
    errors: dict[str, str] = {}
    for name in order:
        try:
            rate = objective_rate(name, model, shape, data, args, device, tmp / name)
        except Exception as exc:
            if args.tiny:
                raise
            traceback.print_exc()
            errors[name] = f"{type(exc).__name__}: {exc}"
            continue
        finally:
            free(device)
        rates.setdefault(name, []).append(rate)
    sft = sum(rates["sft"]) / len(rates["sft"])
    ratios = {n: sft / (sum(r) / len(r)) for n, r in rates.items()}
    print(
        f"[objectives {shape}] step time / SFT: "
        + ", ".join(f"{n} {ratios[n]:.3f}x" for n in ratios)
        + f" (SFT first/last: {', '.join(f'{r:,.0f}' for r in rates['sft'])} tok/s)"
        + (f"; FAILED: {errors}" if errors else ""),
        flush=True,
    )
    return {"tokens_per_s": rates, "step_time_vs_sft": ratios, "errors": errors}


def objective_rate(name, model, shape, data, args, device, tmp: Path) -> float:
    """Tokens/s of recbias's loop with objective ``name`` (set up outside the timing)."""
    obj = build_objective(ObjectiveConfig(name=name))
    dtype = "bf16" if device.type == "cuda" else "fp32"
    pad = data.builder.tokenizer.pad_token_id
    ctx = ObjectiveContext(
        model,
        data.builder,
        data.titles,
        data.train,
        data.samples,
        data.counts,
        data.trie,
        dtype,
        pad,
    )
    obj.setup(ctx)
    mb = args.micro_batch or MICRO_BATCH[shape]
    return run_recbias(model, obj, data, args, device, mb, args.objective_steps, tmp)[0]


# -- run ----------------------------------------------------------------------------------------
def free(device: torch.device) -> None:
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()


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
