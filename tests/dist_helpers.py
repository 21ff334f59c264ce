"""Run scenarios in 2 CPU processes (gloo) and in one, for the invariance tests.

A scenario trains (and optionally decodes) a tiny model; the same function runs in one process
(the reference) and, through :func:`spawn`, in ``world`` processes. Rank 0 writes its results with
``torch.save`` to ``out/NAME.pt`` so the parent compares them.
"""

from __future__ import annotations

import os
import socket
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd
import torch
import torch.multiprocessing as mp

import tiny
from recbias import distributed
from recbias.lm.batching import encode_samples
from recbias.lm.loading import LoraSettings, add_lora
from recbias.objectives import ObjectiveConfig, build_objective
from recbias.prompts import Domain, PromptBuilder, PromptConfig
from recbias.train.loop import TrainConfig, Trainer

TITLES = tiny.MOVIES


def frame(n: int = 14, seed: int = 0) -> pd.DataFrame:
    g = torch.Generator().manual_seed(seed)
    rows = []
    for i in range(n):
        k = int(torch.randint(1, 5, (1,), generator=g))
        hist = torch.randint(0, len(TITLES), (k,), generator=g).tolist()
        rows.append({"sample_id": 100 + i, "user": i % 5, "history": hist,
                     "target": (i * 3) % len(TITLES)})  # fmt: skip
    return pd.DataFrame(rows)


def builder(tok) -> PromptBuilder:
    return PromptBuilder(tok, PromptConfig(), Domain("movie", "movies"))


def train(run_dir: Path, lora: bool = False, **kw: Any) -> Trainer:
    """Train the tiny model on 14 samples (steps with 1-3 micro-batches, clipping on)."""
    tok = tiny.byte_level_tokenizer()
    model = tiny.tiny_llama(len(tok), seed=1)
    if lora:
        model = add_lora(model, LoraSettings(r=4, alpha=8, dropout=0.1))
    fit = {k: kw.pop(k) for k in ("resume", "stop_after_steps") if k in kw}
    cfg = TrainConfig(
        epochs=kw.pop("epochs", 2),
        lr=1e-2,
        warmup_steps=1,
        micro_batch_size=kw.pop("mbs", 2),
        grad_accum=kw.pop("accum", 3),
        max_grad_norm=0.5,
        checkpoint_every=kw.pop("every", 0),
        **kw,
    )
    trainer = Trainer(
        model, build_objective(ObjectiveConfig()), cfg, run_dir, tok.pad_token_id, 0, "fp32"
    )
    samples = encode_samples(builder(tok), frame(), TITLES, max_length=512)
    trainer.fit(samples, validate=None, **fit)
    return trainer


def weights(trainer: Trainer) -> dict[str, torch.Tensor]:
    """Full trainable weights (gathered under FSDP; rank 0)."""
    from recbias.train.checkpoint import trainable_state

    return {k: v.detach().cpu().clone() for k, v in trainable_state(trainer.model).items()}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _worker(rank: int, world: int, port: int, fn: Callable[[Path], None], out: Path) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank),
                      LOCAL_RANK=str(rank), WORLD_SIZE=str(world))  # fmt: skip
    torch.set_num_threads(1)
    try:
        distributed.init_from_env()
        fn(out)
    except BaseException:
        (out / f"error-rank{rank}.txt").write_text(traceback.format_exc())
        raise
    finally:
        distributed.shutdown()


def spawn(fn: Callable[[Path], None], out: Path, world: int = 2) -> None:
    """Run ``fn(out)`` in ``world`` gloo processes; a failure raises with the worker's traceback."""
    out.mkdir(parents=True, exist_ok=True)
    try:
        mp.spawn(_worker, args=(world, free_port(), fn, out), nprocs=world, join=True)
    except Exception as exc:
        errors = "\n".join(p.read_text() for p in sorted(out.glob("error-rank*.txt")))
        raise AssertionError(f"worker failed:\n{errors}") from exc


def recommender(model: torch.nn.Module, tok):
    """The LLM recommender over the 8 titles, 3 prompts per beam-search batch."""
    from recbias.decoding import BeamConfig
    from recbias.llmrec import LLMRecommender, build_trie

    b = builder(tok)
    trie = build_trie(b, TITLES, range(len(TITLES)))
    return LLMRecommender(model, b, TITLES, trie, BeamConfig(num_beams=4, batch_size=3), "fp32")


def train_and_validate(run_dir: Path, parallel: str) -> dict[str, Any]:
    """Decode 11 samples before training, validate after each epoch, decode after training."""
    from recbias.metrics.ranking import ranking_metrics

    tok = tiny.byte_level_tokenizer()
    model = tiny.tiny_llama(len(tok), seed=1)
    cfg = TrainConfig(epochs=2, lr=1e-2, warmup_steps=0, micro_batch_size=4, grad_accum=1,
                      parallel=parallel, share_prompt_prefix=False, patience=5)  # fmt: skip
    trainer = Trainer(
        model, build_objective(ObjectiveConfig()), cfg, run_dir, tok.pad_token_id, 0, "fp32"
    )
    rec, valid = recommender(model, tok), frame(11, seed=5)
    decoded = []

    def decode() -> tuple[list, list]:
        with distributed.full_weights(model):
            r = rec.recommend(valid, 4)
        decoded.append((r.items.tolist(), r.scores.tolist()))
        return r

    def validate(_: torch.nn.Module) -> float:
        r = rec.recommend(valid, 4)  # the trainer holds the full weights meanwhile
        return ranking_metrics(r.items, valid["target"].to_numpy(), [4])["NDCG@4"]

    decode()
    samples = encode_samples(builder(tok), frame(), TITLES, max_length=512)
    state = trainer.fit(samples, validate)
    decode()
    return {"val": [h["val_metric"] for h in state.history], "decoded": decoded}


def objective_setup(n: int = 16) -> tuple[Any, Any, list, Any]:
    """(tiny model, tokenizer, encoded samples, ObjectiveContext) over ``n`` samples, for the
    objectives' multi-process tests."""
    import numpy as np

    from recbias.llmrec import build_trie
    from recbias.objectives.base import ObjectiveContext

    tok = tiny.byte_level_tokenizer()
    model = tiny.tiny_llama(len(tok), seed=1)
    rows = frame(n)
    build = builder(tok)
    samples = encode_samples(build, rows, TITLES, max_length=512)
    counts = np.bincount(rows["target"], minlength=len(TITLES))
    trie = build_trie(build, TITLES, range(len(TITLES)))
    ctx = ObjectiveContext(
        model, build, TITLES, rows, samples, counts, trie, "fp32", tok.pad_token_id
    )
    return model, tok, samples, ctx
