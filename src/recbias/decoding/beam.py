"""Batched beam search constrained to an :class:`ItemTrie`, with its own KV-cache loop.

    cfg = BeamConfig(num_beams=10, length_penalty=0.0)
    results = constrained_beam_search(model, prompt_ids, trie, cfg, pad_token_id=tok.pad_token_id)
    results[0].items, results[0].scores     # distinct item ids, best first

Semantics follow transformers 5.23 ``generate(num_beams=W, num_return_sequences=W,
do_sample=False, prefix_allowed_tokens_fn=trie lookup, early_stopping=False)``:

* each step scores every trie edge out of every live beam (beam sum + full-vocabulary log-prob)
  and keeps the best ``2W`` candidates per prompt, ranked by score, ties by (beam, token);
* candidates that complete an item *and* rank in the top ``W`` become hypotheses scored
  ``sum / len**length_penalty`` with ``len`` = generated tokens including the terminator;
  the best ``W`` hypotheses are kept;
* the best ``W`` candidates that do not complete an item are the next beams;
* a prompt stops as in HF (``stop="hf"``): all ``W`` hypothesis slots are filled and the best
  running beam, normalised at its current length, is no better than the worst hypothesis.

Deliberate differences from HF: the prompt is run once per prompt, not once per beam; beam slots
that HF fills with placeholder copies (score -1e9) are left empty, so junk duplicates never reach
the output; finished prompts leave the batch; and ``stop="exact"`` offers a sound stopping rule.

Device: everything runs on the device of the model's parameters. The trie is moved there once per
call (pass ``trie.to(device)`` to make that a no-op), and every tensor fed to the model, the beam
bookkeeping and the :class:`EdgeScores` a score hook sees live there; results come back as Python
lists. Only the CPU path is tested: no CUDA device was available.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor
from transformers import DynamicCache

from recbias.decoding.config import BeamConfig, EdgeScores, ScoreHook
from recbias.decoding.kv import (
    SharedPrefix,
    eval_mode,
    model_device,
    shared_prefix_attention_enabled,
    supports_shared_prefix,
)
from recbias.decoding.trie import ItemTrie
from recbias.errors import ModelError, RecbiasError
from recbias.lm.token_context import context_width, preceding_tokens

NEG_INF = float("-inf")


@dataclass
class BeamResult:
    """Ranked items for one prompt."""

    items: list[int]  # distinct item ids, best first
    scores: list[float]  # final (length-penalised) scores, descending


@dataclass
class _Beams:
    """Running beams of a batch, one row of ``W`` slots per prompt."""

    score: Tensor  # [P, W] running sum of edge scores; -inf = empty slot
    node: Tensor  # [P, W] trie node; -1 = empty slot


@dataclass
class _Padded:
    """Left-padded prompts of a batch."""

    mask: Tensor  # [P, L] 1 on prompt tokens
    length: Tensor  # [P] prompt lengths
    index: Tensor  # [P] position of each prompt in the caller's list


def constrained_beam_search(
    model: torch.nn.Module,
    prompts: Sequence[Sequence[int]],
    trie: ItemTrie,
    cfg: BeamConfig,
    pad_token_id: int,
    score_hook: ScoreHook | None = None,
    batches: Sequence[Sequence[int]] | None = None,
) -> list[BeamResult]:
    """Top items for every prompt (token ids ending with the response prefix).

    ``batches`` (default :func:`batch_plan`) are the prompt indices of each forward batch; a
    prompt in none of them gets an empty result (sharded decoding deals whole batches to ranks,
    so every prompt is decoded in the same batch, with the same numbers, whatever the ranks)."""
    _check_inputs(model, prompts, trie)
    trie = trie.to(model_device(model))
    results: list[BeamResult] = [BeamResult([], [])] * len(prompts)
    with torch.inference_mode(), eval_mode(model):
        for chunk in batch_plan(prompts, cfg.batch_size) if batches is None else batches:
            batch = [list(prompts[i]) for i in chunk]
            found = _search_batch(model, batch, chunk, trie, cfg, pad_token_id, score_hook)
            for i, res in zip(chunk, found, strict=True):
                results[i] = res
    return results


def batch_plan(prompts: Sequence[Sequence[int]], batch_size: int) -> list[list[int]]:
    """Prompt indices of every forward batch: sorted by length (minimal padding), then chunked."""
    order = sorted(range(len(prompts)), key=lambda i: len(prompts[i]))
    return [order[start : start + batch_size] for start in range(0, len(order), batch_size)]


def _check_inputs(model: torch.nn.Module, prompts: Sequence[Sequence[int]], trie: ItemTrie) -> None:
    if not trie.prefix_free:
        raise RecbiasError(
            "an item's token sequence is a proper prefix of another's; end every sequence with a "
            "terminator (EOS) so that each item is a distinct root-to-leaf path"
        )
    empty = [i for i, p in enumerate(prompts) if len(p) == 0]
    if empty:
        raise RecbiasError(f"prompts {empty[:10]} are empty")
    limit = getattr(model.config, "max_position_embeddings", None)
    longest = max((len(p) for p in prompts), default=0) + trie.max_depth
    if limit is not None and longest > limit:
        raise ModelError(f"prompt + item needs {longest} positions, the model has {limit}")


def _search_batch(
    model: torch.nn.Module,
    prompts: list[list[int]],
    index: list[int],
    trie: ItemTrie,
    cfg: BeamConfig,
    pad_token_id: int,
    hook: ScoreHook | None,
) -> list[BeamResult]:
    n, width = len(prompts), cfg.num_beams
    reach = context_width(model)  # tokens before a position that the input embedding reads
    tails = _left_pad([p[-reach:] for p in prompts], -1, model_device(model))[0] if reach else None
    padded, cache, logits = _prefill(model, prompts, index, pad_token_id, reach)
    if trie.stride > logits.shape[-1]:
        raise ModelError(
            f"trie token {trie.stride - 1} is outside the model's {logits.shape[-1]} logits"
        )
    prefix = None
    if cfg.share_prompt_kv and supports_shared_prefix(model):
        prefix = SharedPrefix.from_cache(cache, padded.mask, width)
        cache = DynamicCache()  # generated tokens only
    device = padded.mask.device  # the model's (its output logits may sit elsewhere if sharded)
    beams, kept_score, kept_item, row_slot = _start(n, width, device)
    step = 0
    while True:
        logp = torch.log_softmax(logits.to(device).float(), dim=-1)  # [rows, V] fp32, as HF
        cand, child = _candidates(logp, beams, row_slot, trie, cfg, hook, padded.index, step)
        top_score, top_child, top_slot = _top_candidates(cand, child, 2 * width)
        kept_score, kept_item = _keep_finished(
            kept_score, kept_item, top_score, top_child, trie, cfg, step
        )
        beams, parent_slot = _next_beams(top_score, top_child, top_slot, trie, width)
        stopped = _stopped(beams, kept_score, trie, cfg, step)[:, None]
        beams = _Beams(
            beams.score.masked_fill(stopped, NEG_INF), beams.node.masked_fill(stopped, -1)
        )
        new_slot = (beams.node.view(-1) >= 0).nonzero().squeeze(1)
        if new_slot.numel() == 0:
            break
        _reorder(cache, row_slot, parent_slot.view(-1)[new_slot], n * width)
        row_slot = new_slot
        nodes = beams.node.view(-1)[row_slot]
        keys = None if tails is None else _path_keys(trie, nodes, tails[row_slot // width], reach)
        with preceding_tokens(model, keys):
            logits = _decode(
                model, cache, prefix, trie.token_in[nodes], padded, row_slot, width, step
            )
        step += 1
    kept_score, kept_item = kept_score.cpu(), kept_item.cpu()
    return [_result(s, i, cfg.n_return) for s, i in zip(kept_score, kept_item, strict=True)]


def _start(n: int, width: int, device: torch.device) -> tuple[_Beams, Tensor, Tensor, Tensor]:
    """Initial ``beams`` (one root beam per prompt), empty ``kept_score, kept_item`` ``[P, W]``
    and ``row_slot`` (flat beam slot of each model row)."""
    beams = _empty_beams(n, width, device)
    beams.score[:, 0], beams.node[:, 0] = 0.0, 0
    kept_score = torch.full((n, width), NEG_INF, device=device)
    kept_item = torch.full((n, width), -1, dtype=torch.long, device=device)
    return beams, kept_score, kept_item, torch.arange(n, device=device) * width


def _reorder(cache: DynamicCache, row_slot: Tensor, parent_slot: Tensor, n_slots: int) -> None:
    """Gather the cache rows of the new beams' parents (skipped when the rows stay in place)."""
    parent_row = _slot_to_row(row_slot, n_slots)[parent_slot]
    if not torch.equal(parent_row, torch.arange(len(row_slot), device=row_slot.device)):
        cache.reorder_cache(parent_row)


def _prefill(
    model: torch.nn.Module,
    prompts: list[list[int]],
    index: list[int],
    pad_token_id: int,
    reach: int = 0,
) -> tuple[_Padded, DynamicCache, Tensor]:
    """Run every prompt once; return the batch's cache and last-position logits ``[P, V]``.

    Template prompts share a long header (the instruction): its tokens common to the whole batch
    are run once and their KV cache is copied to every prompt; the rest is left-padded after it.
    """
    device = model_device(model)
    shared = _shared_header_length(prompts)
    header = None
    if shared:
        head_ids = torch.tensor([prompts[0][:shared]], device=device)
        header = model(input_ids=head_ids, use_cache=True, logits_to_keep=1).past_key_values
        header.batch_repeat_interleave(len(prompts))
    ids, rest_mask = _left_pad([p[shared:] for p in prompts], pad_token_id, device)
    position = shared + (rest_mask.cumsum(-1) - 1).clamp(min=0)
    head_mask = torch.ones((len(prompts), shared), dtype=torch.long, device=device)
    mask = torch.cat([head_mask, rest_mask], dim=1)
    # An input embedding that reads ``reach`` tokens back sees the header's tail before the rest.
    back = min(reach, shared)
    keys = _left_pad([p[shared - back :] for p in prompts], -1, device)[0] if back else None
    with preceding_tokens(model, keys):
        out = model(
            input_ids=ids,
            attention_mask=mask,
            position_ids=position,
            past_key_values=header,
            use_cache=True,
            logits_to_keep=1,
        )
    length = torch.tensor([len(p) for p in prompts], device=device)
    padded = _Padded(mask, length, torch.tensor(index, device=device))
    return padded, out.past_key_values, out.logits[:, -1]


def _shared_header_length(prompts: list[list[int]], minimum: int = 8) -> int:
    """Tokens common to all prompts, leaving each at least one own token; 0 if under ``minimum``."""
    if len(prompts) < 2:
        return 0
    limit = min(len(p) for p in prompts) - 1
    first = prompts[0]
    shared = 0
    while shared < limit and all(p[shared] == first[shared] for p in prompts):
        shared += 1
    return shared if shared >= minimum else 0


def _left_pad(
    seqs: list[list[int]], pad_token_id: int, device: torch.device
) -> tuple[Tensor, Tensor]:
    """-> ``ids, mask`` ``[n, longest]`` on ``device`` with padding on the left (one copy each)."""
    width = max(len(s) for s in seqs)
    ids = [[pad_token_id] * (width - len(s)) + list(s) for s in seqs]
    mask = [[0] * (width - len(s)) + [1] * len(s) for s in seqs]
    return (
        torch.tensor(ids, dtype=torch.long, device=device),
        torch.tensor(mask, dtype=torch.long, device=device),
    )


def _decode(
    model: torch.nn.Module,
    cache: DynamicCache,
    prefix: SharedPrefix | None,
    tokens: Tensor,
    padded: _Padded,
    row_slot: Tensor,
    width: int,
    step: int,
) -> Tensor:
    """Feed each row's newest token ``tokens: [rows]``. -> logits ``[rows, V]``"""
    prompt = row_slot // width
    position = (padded.length[prompt] + step)[:, None]
    inputs = {"input_ids": tokens[:, None], "position_ids": position, "past_key_values": cache}
    if prefix is None:
        generated = torch.ones((len(tokens), step + 1), dtype=torch.long, device=tokens.device)
        mask = torch.cat([padded.mask[prompt], generated], dim=1)
        return model(**inputs, attention_mask=mask, use_cache=True, logits_to_keep=1).logits[:, -1]
    prefix.slot = row_slot
    with shared_prefix_attention_enabled(model):
        out = model(**inputs, use_cache=True, logits_to_keep=1, recbias_prefix=prefix)
    return out.logits[:, -1]


def _path_keys(trie: ItemTrie, nodes: Tensor, tails: Tensor, reach: int) -> Tensor:
    """``[rows, reach + 1]``: each row's newest token (at ``nodes``) after the ``reach`` tokens
    before it, from its trie path and then its prompt's tail ``tails: [rows, reach]``."""
    path = trie.path_tail(nodes, reach + 1)
    col = torch.arange(reach + 1, device=nodes.device)[None, :]
    depth = trie.depth[nodes][:, None]  # generated tokens, the newest included
    from_tail = tails.gather(1, (col + depth - 1).clamp(max=reach - 1))
    return torch.where(col >= reach + 1 - depth, path, from_tail)


def _candidates(
    logp: Tensor,
    beams: _Beams,
    row_slot: Tensor,
    trie: ItemTrie,
    cfg: BeamConfig,
    hook: ScoreHook | None,
    prompt_index: Tensor,
    step: int,
) -> tuple[Tensor, Tensor]:
    """Score every trie edge of every live beam -> ``score, child`` ``[P, W, D]`` (-inf / -1 padding)."""
    parent = beams.node.view(-1)[row_slot]
    token, child, valid = trie.edges(parent)  # [rows, D]
    edge = logp.gather(1, token).masked_fill(~valid, NEG_INF)
    if cfg.renormalize:
        edge = edge - torch.logsumexp(edge, dim=-1, keepdim=True)
    if hook is not None:
        prompt = prompt_index[row_slot // cfg.num_beams]
        view = EdgeScores(edge, parent, token, child, valid, prompt, step)
        edge = hook(view).float().masked_fill(~valid, NEG_INF)
    n, width = beams.node.shape
    score = torch.full((n * width, edge.shape[1]), NEG_INF, device=edge.device)
    score[row_slot] = beams.score.view(-1)[row_slot, None] + edge
    children = torch.full_like(score, -1, dtype=torch.long)
    children[row_slot] = child
    return score.view(n, width, -1), children.view(n, width, -1)


def _top_candidates(score: Tensor, child: Tensor, k: int) -> tuple[Tensor, Tensor, Tensor]:
    """Best ``k`` candidates per prompt of ``score, child: [P, W, D]``, ties by (beam, token).

    -> ``score, child, parent slot`` ``[P, k]``; missing candidates have score -inf and child -1.
    The parent slot is the flat beam index ``p * W + w``.
    """
    n, width, degree = score.shape
    k = min(k, width * degree)
    top, flat = torch.sort(score.view(n, -1), dim=1, descending=True, stable=True)
    top, flat = top[:, :k], flat[:, :k]
    top_child = torch.where(top > NEG_INF, child.view(n, -1).gather(1, flat), -1)
    slot = torch.arange(n, device=flat.device)[:, None] * width + flat // degree
    return top, top_child, slot


def _keep_finished(
    kept_score: Tensor,
    kept_item: Tensor,
    top_score: Tensor,
    top_child: Tensor,
    trie: ItemTrie,
    cfg: BeamConfig,
    step: int,
) -> tuple[Tensor, Tensor]:
    """Merge candidates ranked in the top ``W`` that complete an item into the best-``W`` hypotheses."""
    width = cfg.num_beams
    item = torch.where(top_child >= 0, trie.leaf_item[top_child.clamp(min=0)], -1)
    rank = torch.arange(top_score.shape[1], device=top_score.device)
    ends = (item >= 0) & (rank < width)[None, :]
    # As HF: len = tokens generated so far, terminator included (the prompt is not counted).
    final = torch.where(ends, top_score / float(step + 1) ** cfg.length_penalty, NEG_INF)
    score = torch.cat([kept_score, final], dim=1)
    items = torch.cat([kept_item, torch.where(ends, item, -1)], dim=1)
    best, pick = torch.sort(score, dim=1, descending=True, stable=True)
    return best[:, :width], items.gather(1, pick[:, :width])


def _next_beams(
    top_score: Tensor, top_child: Tensor, top_slot: Tensor, trie: ItemTrie, width: int
) -> tuple[_Beams, Tensor]:
    """The first ``W`` candidates that do not complete an item -> beams and their parent slots."""
    n = top_score.shape[0]
    item = torch.where(top_child >= 0, trie.leaf_item[top_child.clamp(min=0)], -1)
    go = (top_child >= 0) & (item < 0)
    rank = go.long().cumsum(1) - 1
    go &= rank < width
    p, k = go.nonzero(as_tuple=True)
    beams = _empty_beams(n, width, top_score.device)
    parent = torch.full_like(beams.node, -1)
    beams.score[p, rank[p, k]] = top_score[p, k]
    beams.node[p, rank[p, k]] = top_child[p, k]
    parent[p, rank[p, k]] = top_slot[p, k]
    return beams, parent


def _stopped(
    beams: _Beams, kept_score: Tensor, trie: ItemTrie, cfg: BeamConfig, step: int
) -> Tensor:
    """Prompts that can stop: no live beam, or none can beat the worst of ``W`` kept hypotheses."""
    lp = cfg.length_penalty
    live = beams.node >= 0
    if cfg.stop == "hf":  # HF: the top running beam normalised at its current length
        best = beams.score[:, 0] / float(step + 1) ** lp
    else:  # sum log-prob <= running sum; the final length lies in [depth + 1, deepest leaf below]
        longest = trie.max_leaf_depth[beams.node.clamp(min=0)].float()
        bound = torch.maximum(beams.score / float(step + 2) ** lp, beams.score / longest**lp)
        best = bound.masked_fill(~live, NEG_INF).amax(dim=1)
    full = torch.isfinite(kept_score).all(dim=1)
    return ~live.any(dim=1) | (full & (best <= kept_score[:, -1]))


def _slot_to_row(row_slot: Tensor, n_slots: int) -> Tensor:
    """Inverse of ``row_slot``: model row of each flat beam slot, -1 for slots without a row."""
    row = torch.full((n_slots,), -1, dtype=torch.long, device=row_slot.device)
    row[row_slot] = torch.arange(len(row_slot), device=row_slot.device)
    return row


def _empty_beams(n: int, width: int, device: torch.device) -> _Beams:
    """``n`` prompts' beam rows of ``width`` empty slots (score -inf, node -1)."""
    score = torch.full((n, width), NEG_INF, device=device)
    return _Beams(score, torch.full((n, width), -1, dtype=torch.long, device=device))


def _result(score: Tensor, item: Tensor, n_return: int) -> BeamResult:
    keep = torch.isfinite(score)
    return BeamResult(item[keep][:n_return].tolist(), score[keep][:n_return].tolist())
