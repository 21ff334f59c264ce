"""Training parts of bench/bench_gpu.py: recbias's loop vs HF ``Trainer``, objectives vs SFT."""

from __future__ import annotations

import argparse
import copy
import time
import traceback
from pathlib import Path
from typing import Any

import torch

from bench_training import pad_rows
from gpu_common import MICRO_BATCH, build_model, free, model_flops, sync
from recbias.lm.batching import TokenizedSample
from recbias.objectives import ObjectiveConfig, build_objective, registered
from recbias.objectives.base import ObjectiveContext
from recbias.train.loop import TrainConfig, Trainer


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
    from transformers import TrainerCallback

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

    targs = hf_arguments(args, device, mb, len(rows) // mb, tmp)
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


def hf_arguments(args, device: torch.device, mb: int, steps: int, tmp: Path):
    """HF's settings matching recbias's loop: bf16 autocast, fused AdamW, linear decay, no warm-up,
    clipping at 1.0, nothing logged or saved; everything else at HF's defaults."""
    from transformers import TrainingArguments

    cuda = device.type == "cuda"
    return TrainingArguments(
        output_dir=str(tmp / "hf"),
        per_device_train_batch_size=mb,
        max_steps=steps,
        bf16=cuda,
        use_cpu=not cuda,
        learning_rate=1e-4,
        lr_scheduler_type="linear",
        warmup_steps=0,
        optim="adamw_torch_fused" if cuda else "adamw_torch",
        max_grad_norm=1.0,
        report_to=[],
        save_strategy="no",
        logging_strategy="no",
        dataloader_num_workers=0,
        disable_tqdm=True,
        seed=args.seed,
    )


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
