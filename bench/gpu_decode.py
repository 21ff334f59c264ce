"""Decoding part of bench/bench_gpu.py: recbias's constrained beam search vs HF ``generate``."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import torch

from bench_decoding import agreement, hf_generate
from gpu_common import BenchData, build_model, free, timed
from recbias.decoding import BeamConfig, BeamResult, constrained_beam_search


# -- decoding -----------------------------------------------------------------------------------
def run_hf(model, prompts, trie, args, pad, eos, table, batch: int) -> list[BeamResult]:
    reference = BeamConfig(num_beams=args.beams, length_penalty=0.0)  # as HF generate is asked
    out: list[BeamResult] = []
    for start in range(0, len(prompts), batch):
        chunk = prompts[start : start + batch]
        out += hf_generate(model, chunk, trie, reference, pad, eos, table)
    return out


class Decoders:
    """recbias's search and HF ``generate`` over one model, trie and settings."""

    def __init__(self, model, data: BenchData, args, device: torch.device) -> None:
        self.model, self.args, self.device = model, args, device
        self.pad, self.eos = data.builder.tokenizer.pad_token_id, terminator(data)
        self.trie = data.trie.to(device)
        self.table = self.trie.hf_prefix_table()
        self.cfg = BeamConfig(num_beams=args.beams)

    def ours(self, prompts, batch: int) -> list[BeamResult]:
        cfg = replace(self.cfg, batch_size=batch)
        return constrained_beam_search(self.model, prompts, self.trie, cfg, self.pad)

    def hf(self, prompts, batch: int) -> list[BeamResult]:
        a = self
        return run_hf(a.model, prompts, a.trie, a.args, a.pad, a.eos, a.table, batch)

    def rate(self, fn, prompts, batch: int) -> float:
        """Users/s of ``fn(prompts, batch)``."""
        return len(prompts) / timed(lambda: fn(prompts, batch), self.device)[1]


def bench_decoding(shape, data, args, device) -> dict[str, Any]:
    """recbias over ``--users`` at each ``--decode-batch``; recbias and HF ``generate`` over
    ``--hf-users`` at each ``--hf-batch`` (the same prompts, batches and model); agreement in fp32."""
    model = build_model(shape, len(data.builder.tokenizer), device, args.seed).eval()
    fast = torch.bfloat16 if device.type == "cuda" else torch.float32
    big = [int(b) for b in args.decode_batch.split(",")]
    small = [int(b) for b in str(args.hf_batch).split(",")]
    users, hf_users = data.prompts[: args.users], data.prompts[: args.hf_users]
    dec = Decoders(model.to(fast), data, args, device)
    with torch.inference_mode():
        dec.ours(users, max(big)), dec.hf(hf_users[: min(small)], min(small))  # warm-up
        rate = {b: dec.rate(dec.ours, users, b) for b in big}
        same = {
            b: {
                "recbias": dec.rate(dec.ours, hf_users, b),
                "hf_generate": dec.rate(dec.hf, hf_users, b),
            }
            for b in small
        }
    model.float()
    with torch.inference_mode():
        few = data.prompts[: args.agree_users]
        agree = agreement(dec.ours(few, max(big)), dec.hf(few, min(small)), 1e-3)
    model.cpu()
    free(device)
    hf_best = max(v["hf_generate"] for v in same.values())
    res = {
        "items": dec.trie.n_items,
        "trie_depth": dec.trie.max_depth,
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
        "agreement_fp32": agree,
    }
    print(describe(shape, res, args.beams), flush=True)
    return res


def describe(shape: str, res: dict[str, Any], beams: int) -> str:
    a, same = res["agreement_fp32"], res["same_batch_users_per_s"]
    pairs = "; ".join(
        f"batch {b}: {v['recbias']:,.1f} vs {v['hf_generate']:,.1f} "
        f"({v['recbias'] / v['hf_generate']:.2f}x)"
        for b, v in same.items()
    )
    return (
        f"[decode {shape}] recbias {res['users_per_s']:,.1f} users/s (batch {res['batch']}; "
        + ", ".join(f"{r:,.1f} at {b}" for b, r in res["users_per_s_by_batch"].items())
        + f") | best HF generate {res['hf_users_per_s']:,.1f} users/s | "
        f"{res['speedup_vs_hf_generate']:.2f}x | same {res['hf_users']} users, recbias vs HF: "
        f"{pairs} | fp32 top-{beams} agreement: same set {a['same_set']:.1%}, same order "
        f"{a['same_order']:.1%}"
    )


def terminator(data: BenchData) -> int:
    return data.builder.encode_target(data.titles[0])[-1]
