"""Shared pieces of bench/bench_gpu.py: shapes, data, randomly initialised models, timing."""

from __future__ import annotations

import argparse
import gc
import os
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import torch
from transformers import LlamaConfig, LlamaForCausalLM

from recbias.baselines import count_items
from recbias.decoding import ItemTrie
from recbias.lm.batching import TokenizedSample, encode_samples
from recbias.prompts import Domain, PromptBuilder, PromptConfig
from recbias.recommender import build_trie

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
MICRO_BATCH = {"smollm2-135m": 256, "qwen-1.5b": 64, "tiny": 4}  # GPU steps are launch-bound


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


def free(device: torch.device) -> None:
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()


def timed(fn: Callable[[], Any], device: torch.device) -> tuple[Any, float]:
    sync(device)
    t0 = time.perf_counter()
    out = fn()
    sync(device)
    return out, time.perf_counter() - t0
