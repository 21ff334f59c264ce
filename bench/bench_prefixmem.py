"""Training-step time of a causal LM with semantic-ID tokens, with and without PrefixMem.

    python bench/bench_prefixmem.py                       # a smaller SmolLM2-like Llama, CPU
    python bench/bench_prefixmem.py --shape smollm2-135m  # the real 135M shape (random weights)

Both models start from the same random weights (built from an architecture config, nothing is
downloaded) with ``levels x codes`` SID tokens added; one gets a PrefixMem encoder. A step is
forward + backward + AdamW (fused, the encoder in its own ``lr_multiplier`` group, as the training
loop builds it) on sequences of text with item histories written as SID runs, every position
supervised. After an untimed warm-up the two are timed in alternating rounds (the order rotates)
so slow drifts of the machine hit both alike; the bench prints the median paired ratio. It also
times the encoder's own work alone (its term's forward and backward and its AdamW update) and
prints 1 + that / the plain step: the same overhead, over a shorter window, so less exposed to a
busy machine's noise.
Target (issue 17): <= 1.10x. Writes bench/results/prefixmem.json.
"""

from __future__ import annotations

import argparse
import copy
import platform
import statistics
import subprocess
import time
from pathlib import Path

import torch
import transformers
from transformers import LlamaConfig, LlamaForCausalLM

from gpu_common import SHAPES as GPU_SHAPES
from recbias.fsutil import write_json
from recbias.sidllm.prefixmem import PrefixMemConfig
from recbias.sidllm.prefixmem_attach import attach_prefixmem
from recbias.train.loop import param_groups

RESULTS = Path(__file__).parent / "results" / "prefixmem.json"
SHAPES = {
    "smollm2-135m": GPU_SHAPES["smollm2-135m"],
    "small": dict(hidden_size=192, intermediate_size=512, num_hidden_layers=6,
                  num_attention_heads=3, num_key_value_heads=1),
}  # fmt: skip
TEXT_VOCAB = 49152  # SmolLM2's


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--shape", choices=sorted(SHAPES), default="small")
    p.add_argument("--levels", type=int, default=4, help="SID levels")
    p.add_argument("--codes", type=int, default=256, help="codes per level")
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--seq", type=int, default=256, help="tokens per sequence")
    p.add_argument("--table-rows", type=int, default=PrefixMemConfig.table_rows)
    p.add_argument("--steps", type=int, default=3, help="timed steps per model per round")
    p.add_argument("--rounds", type=int, default=4)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--dtype", choices=["fp32", "bf16"], default="fp32")
    p.add_argument("--out", type=Path, default=RESULTS)
    return p.parse_args(argv)


def build_models(args: argparse.Namespace) -> tuple[torch.nn.Module, torch.nn.Module]:
    torch.manual_seed(0)
    vocab = TEXT_VOCAB + args.levels * args.codes
    cfg = LlamaConfig(vocab_size=vocab, tie_word_embeddings=True, **SHAPES[args.shape])
    plain = LlamaForCausalLM(cfg)
    plain.train()
    with_mem = copy.deepcopy(plain)
    level = torch.full((vocab,), -1, dtype=torch.long)
    code = torch.full((vocab,), -1, dtype=torch.long)
    sid = torch.arange(args.levels * args.codes)
    level[TEXT_VOCAB:], code[TEXT_VOCAB:] = sid // args.codes, sid % args.codes
    pm_cfg = PrefixMemConfig(table_rows=args.table_rows, out_init_std=0.02)
    attach_prefixmem(with_mem, level, code, pm_cfg)
    return plain, with_mem


def sequences(args: argparse.Namespace) -> torch.Tensor:
    """``[batch, seq]``: a text header, then items (a SID run and a separator) to the end."""
    g = torch.Generator().manual_seed(1)
    rows = []
    for _ in range(args.batch):
        row = torch.randint(0, TEXT_VOCAB, (32,), generator=g).tolist()
        while len(row) < args.seq:
            codes = torch.randint(0, args.codes, (args.levels,), generator=g)
            row += [*(TEXT_VOCAB + torch.arange(args.levels) * args.codes + codes).tolist(), 11]
        rows.append(row[: args.seq])
    return torch.tensor(rows)


def step_fn(model: torch.nn.Module, ids: torch.Tensor, dtype: str):
    opt = torch.optim.AdamW(param_groups(model, 1e-4), lr=1e-4, fused=True)

    def step() -> None:
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=dtype == "bf16"):
            loss = model(input_ids=ids, labels=ids).loss
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    return step


def encoder_step_fn(model: torch.nn.Module, ids: torch.Tensor, dtype: str):
    """The encoder's own work in a step: its term forward and backward, and its AdamW update."""
    encoder = model.model.embed_tokens.prefixmem
    opt = torch.optim.AdamW(list(encoder.parameters()), lr=1e-4, fused=True)

    def step() -> None:
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=dtype == "bf16"):
            term = encoder.term(ids)
        term.float().sum().backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    return step


def timed(step, n: int) -> float:
    start = time.perf_counter()
    for _ in range(n):
        step()
    return (time.perf_counter() - start) / n


def header(args: argparse.Namespace) -> dict[str, object]:
    lines = Path("/proc/cpuinfo").read_text().splitlines()
    names = [ln.split(":", 1)[1].strip() for ln in lines if ln.startswith("model name")]
    cpu = names[0] if names else platform.processor()
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=False
    ).stdout.strip()
    return {
        "cpu": cpu,
        "threads": torch.get_num_threads(),
        "commit": commit,
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "python": platform.python_version(),
        "args": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
    }


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    info = header(args)
    print(" | ".join(f"{k} {v}" for k, v in info.items() if k != "args"))
    plain, with_mem = build_models(args)
    ids = sequences(args)
    steps = {
        "plain": step_fn(plain, ids, args.dtype),
        "prefixmem": step_fn(with_mem, ids, args.dtype),
        "encoder_only": encoder_step_fn(with_mem, ids, args.dtype),
    }
    n_mem = sum(p.numel() for p in with_mem.model.embed_tokens.prefixmem.parameters())
    print(
        f"shape {args.shape}: {sum(p.numel() for p in plain.parameters()) / 1e6:.1f}M params, "
        f"PrefixMem {n_mem / 1e6:.1f}M; batch {args.batch} x {args.seq} tokens, {args.dtype}"
    )
    for step in steps.values():  # warm-up (allocator, optimiser state)
        timed(step, 1)
    ratios, isolated, seconds = [], [], {name: [] for name in steps}
    for r in range(args.rounds):
        order = list(steps) if r % 2 == 0 else list(reversed(steps))
        got = {name: timed(steps[name], args.steps) for name in order}
        for name, s in got.items():
            seconds[name].append(s)
        ratios.append(got["prefixmem"] / got["plain"])
        isolated.append(1 + got["encoder_only"] / got["plain"])
        print(
            f"round {r}: plain {got['plain']:.3f} s/step, prefixmem {got['prefixmem']:.3f} s/step"
        )
    ratio = statistics.median(ratios)
    print(
        f"step-time ratio prefixmem/plain: median {ratio:.3f} (range {min(ratios):.3f}-{max(ratios):.3f})"
    )
    own = statistics.median(isolated)
    print(f"1 + encoder's own work / plain step: median {own:.3f} (less exposed to machine noise)")
    result = {
        **info,
        "encoder_params": n_mem,
        "ratio_median": ratio,
        "own_work_ratio_median": own,
        "ratios": ratios,
        "seconds": seconds,
    }
    write_json(args.out, result)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
