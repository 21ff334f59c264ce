"""Cost of one SPRec self-play iteration relative to one SFT epoch on the same samples.

    python bench/bench_sprec.py --samples 48 --k 3

SmolLM2-135M (embedded) on the quickstart's ML-100K samples, full fine-tuning in bf16 autocast.
From the same start weights, in one process: an untimed warm-up SFT pass, then the SFT epoch over
``--samples`` training samples (the baseline, with the run's micro-batch 4 × accumulation 4), then
the parts of one iteration on the same samples: constrained beam search for the rejected items
(``decode.beam`` of the quickstart: 10 beams), the iteration's SFT epoch, the reference
log-probs (one no-grad pass over chosen + rejected rows) and the DPO epoch (micro-batch 2 prompts ×
accumulation 4, as SPRec). ``--k`` > 1 also times an S-DPO epoch with K rejected items per prompt.
Checkpoint writes are left out of every timed pass. Ratios are to the baseline SFT epoch; MFU of
the baseline is 6·N·tokens/s against the bf16 matmul peak measured in the same run. Writes
bench/results/sprec.json.
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import json
import time
from pathlib import Path

import numpy as np
import torch

from bench_training import matmul_peak
from recbias.config import load_config
from recbias.llmrec import RunConfig, load_data, load_lm
from recbias.llmrec.sprec import build_preferences, decode_rejected, draw_samples, phase_config
from recbias.lm.batching import encode_samples
from recbias.objectives import ObjectiveConfig, build_objective
from recbias.objectives.dpo import DPOObjective, collate_preferences, reference_logps
from recbias.train.loop import Trainer


def fit_seconds(lm, cfg, phase: str, samples, tmp: Path, **kw) -> float:
    """Seconds of one epoch of ``phase`` (sft / dpo) over ``samples``, no checkpoint write."""
    tcfg = phase_config(cfg, phase)  # type: ignore[arg-type]
    if phase == "dpo":
        objective = DPOObjective(cfg.sprec.dpo)
    else:
        objective = build_objective(ObjectiveConfig(name="sft"))
    pad = lm.builder.tokenizer.pad_token_id
    trainer = Trainer(lm.model, objective, tcfg, tmp, pad, 0, cfg.model.dtype, **kw)
    trainer._save_last = lambda: None
    t0 = time.perf_counter()
    trainer.fit(samples, None)
    return time.perf_counter() - t0


def say(text: str) -> None:
    print(text, flush=True)


def timed(fn, *args, **kw) -> tuple[float, object]:
    t0 = time.perf_counter()
    out = fn(*args, **kw)
    return time.perf_counter() - t0, out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--samples", type=int, default=48, help="training samples of the iteration")
    ap.add_argument("--k", type=int, default=3, help="rejected items of the S-DPO pass (1: skip)")
    ap.add_argument("--threads", type=int, default=None)
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    cfg = load_config(RunConfig, Path("configs/quickstart.toml"))
    sprec = dataclasses.replace(cfg.sprec, iterations=1, samples=args.samples, warmup_steps=0)
    cfg = dataclasses.replace(cfg, sprec=sprec)
    t0 = time.perf_counter()
    ds = load_data(cfg)
    lm = load_lm(cfg, ds)
    say(f"data and model loaded in {time.perf_counter() - t0:.0f} s")
    base = copy.deepcopy(lm.model.state_dict())
    tmp = Path("bench/results/tmp_sprec")
    drawn = draw_samples(ds.split("train"), args.samples, cfg.seed, 0)
    chosen = encode_samples(lm.builder, drawn, ds.titles, lm.max_length)
    peak = matmul_peak()

    say(f"warm-up SFT pass: {fit_seconds(lm, cfg, 'sft', chosen, tmp):.1f} s")
    lm.model.load_state_dict(base)
    sft = fit_seconds(lm, cfg, "sft", chosen, tmp)
    tokens = sum(s.length for s in chosen)
    n_params = sum(p.numel() for p in lm.model.parameters())
    mfu = 6 * n_params * tokens / sft / peak
    say(f"SFT epoch, {args.samples} samples: {sft:.1f} s (MFU {100 * mfu:.1f}% of "
        f"{peak / 1e12:.2f} TFLOP/s bf16 matmul peak)")  # fmt: skip
    lm.model.load_state_dict(base)

    rng = np.random.default_rng(0)
    parts: dict[str, float] = {}
    parts["decode"], rejected = timed(decode_rejected, cfg, ds, lm, drawn, rng)
    say(f"  (decoded the rejected items in {parts['decode']:.1f} s)")
    pairs = build_preferences(lm.builder, chosen, rejected, ds.titles, lm.max_length)
    parts["sft"] = fit_seconds(lm, cfg, "sft", chosen, tmp)
    pad = lm.builder.tokenizer.pad_token_id
    batch = cfg.decode.beam.batch_size
    parts["reference"], _ = timed(reference_logps, lm.model, pairs, pad, cfg.model.dtype, batch)
    parts["dpo"] = fit_seconds(lm, cfg, "dpo", pairs, tmp, collate_fn=collate_preferences)
    total = sum(parts.values())
    result = {
        "samples": args.samples,
        "pairs": len(pairs),
        "sft_epoch_seconds": sft,
        "sft_mfu": mfu,
        "matmul_peak_tflops": peak / 1e12,
        "iteration_seconds": parts,
        "iteration_ratio_vs_sft_epoch": total / sft,
        "part_ratios": {k: v / sft for k, v in parts.items()},
        "threads": torch.get_num_threads(),
    }
    for name, sec in parts.items():
        say(f"  iteration {name:9s} {sec:6.1f} s  {sec / sft:.2f}x")
    say(f"one SPRec iteration: {total:.1f} s = {total / sft:.2f}x an SFT epoch")
    if args.k > 1:
        lm.model.load_state_dict(base)
        k_cfg = dataclasses.replace(cfg.sprec, n_rejected=args.k)
        k_run = dataclasses.replace(cfg, sprec=k_cfg)
        rej = decode_rejected(k_run, ds, lm, drawn, rng)
        k_pairs = build_preferences(lm.builder, chosen, rej, ds.titles, lm.max_length)
        ref_k, _ = timed(reference_logps, lm.model, k_pairs, pad, cfg.model.dtype, batch)
        dpo_k = fit_seconds(lm, k_run, "dpo", k_pairs, tmp, collate_fn=collate_preferences)
        result["sdpo"] = {"k": args.k, "pairs": len(k_pairs), "reference_seconds": ref_k,
                          "dpo_seconds": dpo_k, "dpo_ratio_vs_sft_epoch": dpo_k / sft}  # fmt: skip
        say(f"S-DPO epoch, K = {args.k}: {dpo_k:.1f} s = {dpo_k / sft:.2f}x (reference "
              f"{ref_k / sft:.2f}x)")  # fmt: skip
    out = Path("bench/results/sprec.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
