"""Teacher-forced training of the semantic-ID transformer (cross-entropy per code level).

    log = train_model(net, cfg, item_tokens, train_samples, valid_samples)

Each sample's target code (T tokens incl. suffix) is predicted from BOS + its prefix; the loss is
the mean over tokens of the level-restricted cross-entropy. With ``augment_prefixes`` every
history prefix also predicts the next history item. With validation samples, training stops
after ``patience`` epochs without a lower validation NLL and the best weights are restored.
"""

from __future__ import annotations

import copy
import logging
import time
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import Tensor

from recbias.genrec.codes import encode_histories
from recbias.genrec.config import GenRecConfig
from recbias.genrec.decode import teacher_inputs
from recbias.genrec.model import GenRecTransformer
from recbias.hardware import autocast

log = logging.getLogger(__name__)


def training_pairs(samples: pd.DataFrame, augment: bool) -> tuple[list[list[int]], np.ndarray]:
    """(histories, targets) of the samples, plus every (prefix → next history item) if augment."""
    hists: list[list[int]] = []
    targets: list[int] = []
    seen: set[tuple[int, ...]] = set()
    for hist, target in zip(samples["history"], samples["target"], strict=True):
        hist = [int(i) for i in hist]
        hists.append(hist)
        targets.append(int(target))
        for end in range(1, len(hist)) if augment else ():
            key = (*hist[:end], hist[end])
            if key not in seen:  # the same prefix recurs in overlapping windows of one user
                seen.add(key)
                hists.append(hist[:end])
                targets.append(hist[end])
    return hists, np.asarray(targets, dtype=np.int64)


def batch_loss(
    net: GenRecTransformer, cfg: GenRecConfig, item_tokens: Tensor,
    hists: Sequence[Sequence[int]], targets: Tensor,
) -> Tensor:  # fmt: skip
    """Mean token cross-entropy of the targets' codes."""
    device = item_tokens.device
    hist = encode_histories(hists, item_tokens.cpu(), cfg.max_len).to(device)
    tgt = item_tokens[targets]  # [b, T]
    with autocast(cfg.dtype, device):
        logits = net(hist, teacher_inputs(tgt)[:, None])[:, 0]  # [b, T, V]
    return F.cross_entropy(logits.float().flatten(0, 1), tgt.flatten())


@torch.no_grad()
def evaluate_nll(
    net: GenRecTransformer, cfg: GenRecConfig, item_tokens: Tensor, samples: pd.DataFrame
) -> float:
    """Mean negative log-likelihood per item (nats, summed over the T levels)."""
    net.eval()
    hists = [list(h) for h in samples["history"]]
    targets = torch.tensor(samples["target"].to_numpy(dtype=np.int64), device=item_tokens.device)
    total = 0.0
    for start in range(0, len(hists), cfg.batch_size):
        sl = slice(start, start + cfg.batch_size)
        loss = batch_loss(net, cfg, item_tokens, hists[sl], targets[sl])
        total += float(loss) * len(hists[sl])
    return total / max(len(hists), 1) * item_tokens.shape[1]


def _epoch(net, cfg, item_tokens, hists, targets, opt, gen) -> float:
    net.train()
    order = torch.randperm(len(hists), generator=gen)
    total, count = 0.0, 0
    for start in range(0, len(order), cfg.batch_size):
        idx = order[start : start + cfg.batch_size]
        loss = batch_loss(net, cfg, item_tokens, [hists[i] for i in idx], targets[idx])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(net.parameters(), 1.0)
        opt.step()
        total, count = total + loss.detach() * len(idx), count + len(idx)
    return float(total) / max(count, 1)


def train_model(
    net: GenRecTransformer,
    cfg: GenRecConfig,
    item_tokens: Tensor,
    train: pd.DataFrame,
    valid: pd.DataFrame | None = None,
) -> list[dict[str, Any]]:
    """Train in place; returns one log row per epoch (loss, valid_nll, seconds)."""
    hists, targets_np = training_pairs(train, cfg.augment_prefixes)
    targets = torch.as_tensor(targets_np, device=item_tokens.device)
    gen = torch.Generator().manual_seed(cfg.seed)
    opt = torch.optim.AdamW(net.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    rows, best, best_state, bad = [], float("inf"), None, 0
    for epoch in range(cfg.epochs):
        t0 = time.perf_counter()
        row: dict[str, Any] = {
            "epoch": epoch,
            "loss": _epoch(net, cfg, item_tokens, hists, targets, opt, gen),
        }
        if valid is not None and len(valid):
            row["valid_nll"] = evaluate_nll(net, cfg, item_tokens, valid)
            if row["valid_nll"] < best:
                best, best_state, bad = row["valid_nll"], copy.deepcopy(net.state_dict()), 0
            else:
                bad += 1
        row["seconds"] = time.perf_counter() - t0
        rows.append(row)
        log.info("genrec epoch %s", row)
        if bad >= cfg.patience:
            break
    if best_state is not None:
        net.load_state_dict(best_state)
    net.eval()
    return rows
