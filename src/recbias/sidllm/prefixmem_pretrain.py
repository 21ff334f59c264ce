"""Pretrain PrefixMem tables alone: predict code ``c_{l+1}`` from the memory of ``c_0..c_l``.

The paper's classification pretraining: no language model, one linear head per predicted level
on the memory vector, cross-entropy over the training items' SIDs. The tables are then attached
to an LLM with a fresh ``W_out``::

    encoder, losses = pretrain_prefixmem(cfg, level_of, code_of, item_codes)   # [I, L] codes
    attach_prefixmem(model, level_of, code_of, cfg, pretrained=encoder)

Every item contributes one example per injected level ``l`` (its prefix ``c_0..c_l`` and target
``c_{l+1}``), so a prefix weighs as much as the items under it. Seeded: same inputs, same tables.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from recbias.errors import ConfigError
from recbias.sidllm.prefixmem import PrefixMem, PrefixMemConfig


def pretrain_prefixmem(
    cfg: PrefixMemConfig,
    level_of: Tensor,
    code_of: Tensor,
    item_codes: Tensor,
    epochs: int | None = None,
) -> tuple[PrefixMem, list[float]]:
    """Train a new encoder's tables on ``item_codes [I, L]`` (each item's code per level).

    ``epochs`` defaults to ``cfg.pretrain.epochs``. -> the encoder (its ``W_out`` untrained) and
    the mean training loss of every epoch."""
    settings = cfg.pretrain
    torch.manual_seed(settings.seed)
    encoder = PrefixMem(cfg, level_of, code_of, d_model=1)
    prefix, level, target = _examples(encoder, item_codes)
    levels = encoder.inject_mask.nonzero().flatten().tolist()
    heads = nn.ModuleList(nn.Linear(cfg.memory_dim, encoder.codebooks[lvl + 1]) for lvl in levels)
    params = [encoder.tables, *heads.parameters()]
    optimizer = torch.optim.Adam(params, lr=settings.lr)
    gen = torch.Generator().manual_seed(settings.seed)
    losses = []
    for _ in range(settings.epochs if epochs is None else epochs):
        order = torch.randperm(len(target), generator=gen)
        total = 0.0
        for start in range(0, len(order), settings.batch_size):
            pick = order[start : start + settings.batch_size]
            loss = _loss(encoder, heads, levels, prefix[pick], level[pick], target[pick])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            total += float(loss.detach()) * len(pick)
        losses.append(total / max(len(order), 1))
    return encoder, losses


def _examples(encoder: PrefixMem, item_codes: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """-> ``prefix [M, n_orders]``, ``level [M]``, ``target [M]``: one row per (item, level)."""
    codes = item_codes.long()
    sizes = torch.tensor(encoder.codebooks)
    if codes.dim() != 2 or codes.shape[1] != len(sizes):
        raise ConfigError(
            f"item codes must be [items, {len(sizes)}] (one code per SID level), got "
            f"{tuple(codes.shape)}"
        )
    if bool(((codes < 0) | (codes >= sizes)).any()):
        raise ConfigError(f"item codes outside the codebooks (sizes {sizes.tolist()})")
    prefix = codes[:, : encoder.n_orders]
    rows = [
        (prefix, torch.full((len(codes),), lvl), codes[:, lvl + 1])
        for lvl in encoder.inject_mask.nonzero().flatten().tolist()
    ]
    return tuple(torch.cat(part) for part in zip(*rows, strict=True))  # type: ignore[return-value]


def _loss(
    encoder: PrefixMem,
    heads: nn.ModuleList,
    levels: list[int],
    prefix: Tensor,
    level: Tensor,
    target: Tensor,
) -> Tensor:
    """Mean cross-entropy of each example's next code, every level through its own head."""
    memory = encoder.memory(prefix, level, torch.ones_like(level, dtype=torch.bool))
    total = memory.new_zeros(())
    for lvl, head in zip(levels, heads, strict=True):
        at = level == lvl
        if bool(at.any()):
            total = total + F.cross_entropy(head(memory[at]), target[at], reduction="sum")
    return total / len(target)
