"""Exact item log-probabilities by teacher forcing, sharing one prompt forward across all items.

    scores = score_items(model, prompt_ids, item_seqs)          # [n_items] sum of token log-probs
    per_tok = item_token_logprobs(model, prompt_ids, item_seqs)  # [n_items, max_len], 0 on padding

The prompt's KV cache is computed once and expanded to each chunk of items; items in a chunk are
right-padded, which causal attention makes harmless to the real positions.

Device: the forward passes, the trie (moved once per call) and all intermediate tensors are on
the device of the model's parameters; the results are returned on the CPU. Only the CPU path is
tested: no CUDA device was available.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor
from transformers import DynamicCache

from recbias.decoding.kv import eval_mode, model_device
from recbias.decoding.trie import ItemTrie
from recbias.errors import RecbiasError
from recbias.lm.token_context import context_width, preceding_tokens


def score_items(
    model: torch.nn.Module,
    prompt: Sequence[int],
    item_seqs: Sequence[Sequence[int]],
    batch_size: int = 256,
    renormalize: bool = False,
    trie: ItemTrie | None = None,
) -> Tensor:
    """Sum of log-probs of each item's token sequence after ``prompt``. -> ``[n_items]`` fp32"""
    return item_token_logprobs(model, prompt, item_seqs, batch_size, renormalize, trie).sum(dim=1)


def score_items_batch(
    model: torch.nn.Module,
    prompts: Sequence[Sequence[int]],
    candidates_per_prompt: Sequence[Sequence[Sequence[int]]],
    batch_size: int = 256,
    renormalize: bool = False,
    trie: ItemTrie | None = None,
) -> list[Tensor]:
    """:func:`score_items` for each prompt and its own candidate sequences."""
    if len(prompts) != len(candidates_per_prompt):
        raise RecbiasError(
            f"{len(prompts)} prompts but {len(candidates_per_prompt)} candidate lists"
        )
    trie = None if trie is None else trie.to(model_device(model))  # once, not per prompt
    return [
        score_items(model, p, c, batch_size, renormalize, trie)
        for p, c in zip(prompts, candidates_per_prompt, strict=True)
    ]


def item_token_logprobs(
    model: torch.nn.Module,
    prompt: Sequence[int],
    item_seqs: Sequence[Sequence[int]],
    batch_size: int = 256,
    renormalize: bool = False,
    trie: ItemTrie | None = None,
) -> Tensor:
    """Log-prob of every token of every item. -> ``[n_items, max_len]`` fp32 on the CPU, 0 after
    each item's end.

    ``renormalize`` renormalises each step over the tokens ``trie`` allows at that prefix (the
    decoding setting of the same name); the trie must contain every item's path.
    """
    if renormalize and trie is None:
        raise RecbiasError("renormalize=True needs the item trie")
    if len(prompt) == 0 or any(len(s) == 0 for s in item_seqs):
        raise RecbiasError("the prompt and every item sequence must be non-empty")
    device = model_device(model)
    trie = None if trie is None or not renormalize else trie.to(device)
    longest = max((len(s) for s in item_seqs), default=0)
    out = torch.zeros((len(item_seqs), longest), device=device)
    with torch.inference_mode(), eval_mode(model):
        ids = torch.tensor([list(prompt)], device=device)
        first = model(input_ids=ids, use_cache=True, logits_to_keep=1)
        for start in range(0, len(item_seqs), batch_size):
            chunk = item_seqs[start : start + batch_size]
            logits = _chunk_logits(model, first.past_key_values, first.logits[0, -1], chunk, prompt)
            target, real = _pad(chunk, device)
            logp = _target_logprobs(logits.to(device), target, real, trie)
            out[start : start + len(chunk), : target.shape[1]] = logp.masked_fill(~real, 0.0)
    return out.cpu()


def _chunk_logits(
    model: torch.nn.Module,
    prompt_cache: DynamicCache,
    last: Tensor,
    chunk: Sequence[Sequence[int]],
    prompt: Sequence[int] = (),
) -> Tensor:
    """Logits predicting each token of each item: ``[m, T, V]`` (position 0 from the prompt)."""
    m = len(chunk)
    head = last.float().expand(m, 1, -1)
    longest = max(len(s) for s in chunk)
    if longest == 1:
        return head
    device = model_device(model)
    inputs, _ = _pad([s[:-1] if len(s) > 1 else [0] for s in chunk], device, width=longest - 1)
    layers = [(k.expand(m, -1, -1, -1), v.expand(m, -1, -1, -1)) for k, v, *_ in prompt_cache]
    cache = DynamicCache(layers, config=model.config)
    n_prompt = prompt_cache.get_seq_length()
    position = (n_prompt + torch.arange(longest - 1, device=device)).expand(m, -1)
    mask = torch.ones((m, n_prompt + longest - 1), dtype=torch.long, device=device)
    reach = min(context_width(model), len(prompt))  # an input embedding reading tokens back
    keys = None
    if reach:
        tail = torch.tensor(list(prompt[-reach:]), device=device).expand(m, -1)
        keys = torch.cat([tail, inputs], dim=1)
    with preceding_tokens(model, keys):
        out = model(
            input_ids=inputs, attention_mask=mask, position_ids=position, past_key_values=cache
        )
    return torch.cat([head, out.logits.float().to(head.device)], dim=1)


def _pad(
    seqs: Sequence[Sequence[int]], device: torch.device, width: int | None = None
) -> tuple[Tensor, Tensor]:
    """Right-pad with token 0. -> ``ids, real`` ``[m, width]`` on ``device`` (one copy each)."""
    width = max(len(s) for s in seqs) if width is None else width
    ids = torch.tensor(
        [[*s, *[0] * (width - len(s))] for s in seqs], dtype=torch.long, device=device
    )
    length = torch.tensor([len(s) for s in seqs], device=device)
    return ids, torch.arange(width, device=device)[None, :] < length[:, None]


def _target_logprobs(logits: Tensor, target: Tensor, real: Tensor, trie: ItemTrie | None) -> Tensor:
    """``logits [m, T, V]``, ``target, real [m, T]`` -> log-prob of each target ``[m, T]``."""
    picked = logits.gather(2, target[..., None]).squeeze(2)
    if trie is None:
        return picked - torch.logsumexp(logits, dim=-1)
    m, steps = target.shape
    node = torch.zeros(m, dtype=torch.long, device=target.device)
    norm = torch.zeros((m, steps), device=target.device)
    off_trie = torch.zeros(m, dtype=torch.bool, device=target.device)
    for t in range(steps):  # one trie level per step, vectorised over items
        node = torch.where(real[:, t], node, -1)
        token, _, valid = trie.edges(node.clamp(min=0))
        allowed = logits[:, t].gather(1, token).masked_fill(~valid, float("-inf"))
        norm[:, t] = torch.where(node >= 0, torch.logsumexp(allowed, dim=-1), 0.0)
        node = trie.next_nodes(node, target[:, t])
        off_trie |= real[:, t] & (node < 0)
    if bool(off_trie.any()):
        raise RecbiasError(f"{int(off_trie.sum())} item sequences are not paths of the trie")
    return picked - norm
