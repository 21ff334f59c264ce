"""Shared tiny-model fixtures of the objective tests: titles, samples, context, loss and trainer."""

from __future__ import annotations

import pandas as pd

import tiny
from recbias.baselines import count_items
from recbias.llmrec import build_trie
from recbias.lm.batching import TokenizedSample, encode_samples
from recbias.lm.forward import target_logits
from recbias.objectives import build_objective
from recbias.objectives.base import ObjectiveContext
from recbias.prompts import EncodedPrompt
from recbias.train.loop import TrainConfig, Trainer

TITLES = tiny.MOVIES


def fake_samples(seqs, items):
    """Tokenized samples whose target tokens are ``seqs[item]`` for each of ``items``."""
    return [
        TokenizedSample(i, item, EncodedPrompt([0], [], list(seqs[item])))
        for i, item in enumerate(items)
    ]


def setup_samples(tok, n=12):
    """A prompt builder, ``n`` synthetic rows over TITLES and their encoded samples."""
    rows = [
        {"sample_id": 100 + i, "user": i, "history": [(i + k) % 8 for k in range(1 + i % 3)]}
        | {"target": (i * 3) % len(TITLES)}
        for i in range(n)
    ]
    df = pd.DataFrame(rows)
    builder = tiny.movie_builder(tok)
    samples = encode_samples(builder, df, TITLES, max_length=512)
    return builder, df, samples


def make_ctx(tok, model):
    """An ObjectiveContext for ``model`` over the synthetic samples and the full TITLES trie."""
    builder, df, samples = setup_samples(tok)
    trie = build_trie(builder, TITLES, list(range(len(TITLES))))
    counts = count_items(df, len(TITLES))
    return ObjectiveContext(
        model, builder, TITLES, df, samples, counts, trie, "fp32", tok.pad_token_id
    )


def loss_and_grads(model, obj, batch):
    """The normalised loss of ``obj`` on ``batch`` and a copy of every parameter's gradient."""
    model.zero_grad(set_to_none=True)
    obj.prepare(batch)
    logits = target_logits(model, batch)
    loss = obj(logits, batch.target_labels, batch.meta) / obj.normaliser(
        batch.target_labels, batch.meta
    )
    loss.backward()
    return loss.detach(), [p.grad.clone() for p in model.parameters()]


class Records:
    """A logger that keeps every record it is given in ``rows``."""

    def __init__(self):
        self.rows = []

    def log(self, record):
        self.rows.append(record)


def tiny_train_config(mbs, accum, epochs=1, objective=None) -> TrainConfig:
    """Plain SGD-like settings for accumulation tests: lr 1e-2, no warm-up, no clipping."""
    extra = {} if objective is None else {"objective": objective}
    return TrainConfig(
        epochs=epochs,
        lr=1e-2,
        warmup_steps=0,
        micro_batch_size=mbs,
        grad_accum=accum,
        max_grad_norm=0.0,
        log_every=1,
        **extra,
    )


def train(tok, tmp_path, mbs, accum, objective):
    """Train a seeded tiny Llama for one epoch with ``objective``; return it and its log rows."""
    model = tiny.tiny_llama(len(tok), seed=1)
    ctx = make_ctx(tok, model)
    obj = build_objective(objective)
    obj.setup(ctx)
    cfg = tiny_train_config(mbs, accum, objective=objective)
    records = Records()
    Trainer(model, obj, cfg, tmp_path, tok.pad_token_id, seed=0, dtype="fp32", logger=records).fit(
        ctx.samples, validate=None
    )
    return model, records.rows
