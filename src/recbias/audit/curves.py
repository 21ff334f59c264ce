"""Training curves of an audit: top-1 group shares and token-group losses per weight snapshot.

    cks = snapshot_names(run_dir)                  # ["epoch-1", "epoch-2"] sorted by step
    sections = curves(ctx, out_dir)

Snapshots (``RUN/checkpoints/{epoch-E,step-N}/weights.pt``) hold the trainable state of the model
``load_lm`` builds, so one base model is loaded and each snapshot is copied into it in turn
(``base`` = the untouched model, step 0). Top-1 comes from the run's own constrained beam search
with k=1 (``curves.top1 = "beam"``, ~0.35 s per prompt on SmolLM2-135M) or from exact scoring of
every candidate (``"exact"``, :func:`recbias.decoding.scorer.score_items_batch`, far slower on
a full catalog). Item groups are the audit's relevance groups; token groups come from GDRT Eq. 3
relevance under the base model, so every snapshot is judged against the same groups.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from recbias.audit.analyses import item_relevance_scores
from recbias.audit.context import AuditContext
from recbias.decoding.kv import model_device
from recbias.decoding.scorer import score_items_batch
from recbias.diagnostics.groups import relevance_grouping
from recbias.diagnostics.token_ig import loss_by_group, target_token_losses
from recbias.diagnostics.training_curves import (
    TrainingCurves,
    sample_token_groups,
    training_curves_section,
)
from recbias.llmrec import LLMRecommender, LoadedModel, make_recommender
from recbias.lm.batching import encode_samples
from recbias.lm.loading import autocast
from recbias.metrics.fairness import ItemGrouping, top1_group_shares
from recbias.objectives.relevance import relevance_groups, token_relevance
from recbias.report.sections import Section
from recbias.train.checkpoint import load_weights

log = logging.getLogger(__name__)
SNAPSHOT = re.compile(r"^(epoch|step)-(\d+)$")
HOW_TO = (
    "This run kept no weight snapshots, so there are no training curves. Train with "
    "`train.snapshot_epochs = true` (a snapshot per epoch) or `train.snapshot_every = N` "
    "(every N optimiser steps), e.g. `recbias run CONFIG --set train.snapshot_epochs=true`, "
    "then audit again."
)


def _epoch_steps(run_dir: Path) -> dict[int, int]:
    """Epoch -> optimiser step at its end, from ``train_log.jsonl`` (empty if absent)."""
    path, out = run_dir / "train_log.jsonl", {}
    if path.is_file():
        for line in path.read_text().splitlines():
            try:
                rec = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(rec, dict) and rec.get("event") == "epoch":
                out[int(rec["epoch"])] = int(rec["step"])
    return out


def snapshot_names(run_dir: Path) -> list[str]:
    """``epoch-*`` and ``step-*`` snapshots with weights, ordered by training step."""
    folder = run_dir / "checkpoints"
    found = [p.name for p in folder.iterdir() if SNAPSHOT.match(p.name) and
             (p / "weights.pt").is_file()] if folder.is_dir() else []  # fmt: skip
    steps = _epoch_steps(run_dir)

    def key(name: str) -> tuple[float, int]:
        kind, n = SNAPSHOT.match(name).groups()  # type: ignore[union-attr]
        step = int(n) if kind == "step" else steps.get(int(n), float("inf"))
        return (step, int(n) + (0 if kind == "step" else 10**9))

    return sorted(found, key=key)


def checkpoint_names(ctx: AuditContext) -> list[str]:
    """The configured checkpoints: 'auto' = base + every snapshot ([] if there are none)."""
    names = ctx.cfg.curves.checkpoints
    if names == ["auto"]:
        snaps = snapshot_names(ctx.run_dir)
        return ["base", *snaps] if snaps else []
    for name in names:
        if name != "base":
            ctx.checkpoint_dir(name)  # fail before any work
    return list(names)


def top1(rec: LLMRecommender, samples, method: str, batch_size: int) -> np.ndarray:
    """``[n]`` top-1 item per sample: beam search with k=1, or exact argmax over the trie's items."""
    if method == "beam":
        return rec.recommend(samples, 1).items[:, 0]
    items = rec.trie.item_ids.tolist()
    seqs = [rec.builder.encode_target(rec.titles[i]) for i in items]
    prompts = rec.prompts(samples)
    with autocast(rec.dtype, model_device(rec.model)):
        scores = score_items_batch(rec.model, prompts, [seqs] * len(prompts), batch_size)
    return np.asarray([items[int(torch.argmax(s))] for s in scores], dtype=np.int64)


def _token_setup(ctx: AuditContext, lm: LoadedModel):
    """Training samples of the loss curves and their Eq. 3 token groups ``[n, L]``."""
    cfg, train = ctx.cfg.curves, ctx.ds.split("train")
    n = ctx.cfg.limit(cfg.token_samples)
    rows = train.iloc[np.sort(np.random.default_rng(ctx.cfg.seed).permutation(len(train))[:n])]
    samples = encode_samples(lm.builder, rows, ctx.titles, lm.max_length)
    rel = token_relevance(
        lm.model, lm.builder, samples, ctx.run_cfg.model.dtype, ctx.cfg.batch_size
    )
    n_groups = min(cfg.token_groups, int(np.unique(rel.values[rel.real]).size))
    groups = relevance_groups(rel, n_groups, cfg.grouping, ctx.cfg.seed)
    return samples, sample_token_groups(rel, groups, samples)


def measure(ctx: AuditContext, names: Sequence[str], grouping: ItemGrouping) -> TrainingCurves:
    """Top-1 group shares and token-group losses of every named checkpoint, in order."""
    lm = ctx.take_base()  # weights are overwritten in place: later base() calls reload
    token_samples, token_groups = _token_setup(ctx, lm)
    n_token_groups = int(token_groups.max()) + 1
    prompts = ctx.subset(ctx.cfg.curves.max_prompts)
    rec = make_recommender(ctx.run_cfg, ctx.ds, lm, ctx.run_dir)
    pad, dtype = lm.builder.tokenizer.pad_token_id, ctx.run_cfg.model.dtype
    shares, losses, count = [], [], np.zeros(n_token_groups, dtype=np.int64)
    for name in sorted(names, key=lambda n: n != "base"):  # base first: nothing loaded yet
        if name != "base":
            load_weights(ctx.checkpoint_dir(name), lm.model)
        best = top1(rec, prompts, ctx.cfg.curves.top1, ctx.cfg.batch_size)
        valid = best >= 0
        shares.append(top1_group_shares(best[valid, None], prompts["target"].to_numpy()[valid],
                                        grouping, f"checkpoint {name}").rec_share)  # fmt: skip
        per_tok = target_token_losses(lm.model, token_samples, pad, dtype, ctx.cfg.batch_size)
        mean, count = loss_by_group(per_tok, token_groups, n_token_groups)
        losses.append(mean)
        log.info("training curves: checkpoint %s measured", name)
    order = sorted(names, key=lambda n: n != "base")
    return TrainingCurves(order, grouping.labels, np.stack(shares), np.stack(losses), count)


def curves(ctx: AuditContext, out_dir: Path) -> list[Section]:
    """GDRT Figures 4, 6, 9 over the run's snapshots, or a section saying how to get them."""
    names = checkpoint_names(ctx)
    if not names:
        return [Section("training_curves", "Context bias over training", summary=HOW_TO)]
    grouping = relevance_grouping(item_relevance_scores(ctx), ctx.cfg.n_groups)
    result = measure(ctx, names, grouping)
    targets = ctx.subset(ctx.cfg.curves.max_prompts)["target"].to_numpy()
    target_share = grouping.mass(targets) / max(grouping.mass(targets).sum(), 1e-300)
    sec = training_curves_section(result, out_dir, target_share, "llm")
    sec.summary += (
        f" {len(targets)} '{ctx.cfg.split}' prompts (top-1 by {ctx.cfg.curves.top1}); item groups "
        f"by Eq. 2 relevance under the {ctx.cfg.relevance_model} model."
    )
    return [sec]
