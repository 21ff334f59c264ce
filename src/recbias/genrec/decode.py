"""Catalog-constrained beam search and exact log-likelihood of every item's full code.

    items, scores = beam_search(net, hist, layout, trie, k=10, width=20)   # [B, k] each
    logp = exact_scores(net, hist, item_tokens)                           # [B, n_items]

Both use the model's own per-level distribution (softmax over the level's C tokens), so the score
beam search returns for an item equals its exact score, and with a width ≥ the number of items
beam search's top-1 is the argmax of the exact scores. ``trie_mask`` renormalises each level over
the trie's valid children instead, which makes the item scores a distribution over the catalog.
Scores are always of the full code, suffix included, so colliding items never share a score.
"""

from __future__ import annotations

import torch
from torch import Tensor

from recbias.genrec.codes import BOS, CodeTrie, HistoryBatch, TokenLayout
from recbias.genrec.model import GenRecTransformer, Memory


def teacher_inputs(item_tokens: Tensor) -> Tensor:
    """[n, T] codes → [n, T] decoder inputs (BOS, c_0, ..., c_{T−2})."""
    bos = torch.full_like(item_tokens[:, :1], BOS)
    return torch.cat([bos, item_tokens[:, :-1]], dim=1)


def trie_mask(trie: CodeTrie, layout: TokenLayout) -> Tensor:
    """[n_items, T, vocab] additive mask: 0 on the valid children of each item's prefix at each
    level, −inf elsewhere."""
    n = trie.item_prefix[0].shape[0]
    mask = torch.full((n, layout.depth, layout.vocab), float("-inf"))
    for t, (off, size) in enumerate(zip(layout.offsets, layout.sizes, strict=True)):
        valid = trie.children[t].cpu()[trie.item_prefix[t].cpu()] >= 0  # [n, size]
        mask[:, t, off : off + size] = torch.where(valid, 0.0, float("-inf"))
    return mask


@torch.no_grad()
def exact_scores(
    net: GenRecTransformer, hist: HistoryBatch, item_tokens: Tensor, mask: Tensor | None = None
) -> Tensor:
    """[B, n_items] log p(item's full code | history), summed over its T levels (float32)."""
    memory = net.memory(hist)
    dec_in = teacher_inputs(item_tokens)[None].expand(hist.tokens.shape[0], -1, -1)
    logits = net.decode(memory, dec_in)  # [B, n, T, V]
    if mask is not None:
        logits = logits + mask
    logp = torch.log_softmax(logits, dim=-1)
    picked = logp.gather(-1, item_tokens[None, :, :, None].expand(logp.shape[0], -1, -1, 1))
    return picked.squeeze(-1).sum(-1)


def _step(
    net: GenRecTransformer, memory: Memory, seqs: Tensor, layout: TokenLayout, t: int
) -> Tensor:
    """[B, W, C_t] log-probs of level t's codes after each beam's prefix."""
    logits = net.decode(memory, seqs)[:, :, -1]  # [B, W, V]
    off = layout.offsets[t]
    return torch.log_softmax(logits, dim=-1)[..., off : off + layout.sizes[t]]


@torch.no_grad()
def beam_search(
    net: GenRecTransformer,
    hist: HistoryBatch,
    layout: TokenLayout,
    trie: CodeTrie,
    k: int,
    width: int,
) -> tuple[Tensor, Tensor]:
    """Top-k catalog items [B, k] (−1 when fewer exist) and their log-probs [B, k] (−inf)."""
    memory = net.memory(hist)
    b, device = hist.tokens.shape[0], hist.tokens.device
    seqs = torch.full((b, 1, 1), BOS, dtype=torch.long, device=device)
    prefix = torch.zeros((b, 1), dtype=torch.long, device=device)  # trie node per beam
    score = torch.zeros((b, 1), device=device)
    for t in range(layout.depth):
        logp = _step(net, memory, seqs, layout, t)  # [B, W, C_t]
        child = trie.children[t][prefix.clamp(min=0)]  # [B, W, C_t]
        dead = (child < 0) | (prefix < 0)[..., None]
        cand = (score[..., None] + logp).masked_fill(dead, float("-inf")).flatten(1)
        top = cand.topk(min(width if t < layout.depth - 1 else k, cand.shape[1]), dim=1)
        size = layout.sizes[t]
        beam, code = top.indices // size, top.indices % size
        prefix = child.flatten(1).gather(1, top.indices)
        prefix = prefix.masked_fill(top.values == float("-inf"), -1)
        score = top.values
        prev = seqs.gather(1, beam[..., None].expand(-1, -1, seqs.shape[-1]))
        seqs = torch.cat([prev, (code + layout.offsets[t])[..., None]], dim=-1)
    items = torch.full((b, k), -1, dtype=torch.long, device=device)
    scores = torch.full((b, k), float("-inf"), device=device)
    items[:, : prefix.shape[1]], scores[:, : score.shape[1]] = prefix, score
    return items, scores
