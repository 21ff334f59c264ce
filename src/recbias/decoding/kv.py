"""Decode-step attention that keeps each prompt's KV cache once, shared by all its beams.

HF beam search copies the prompt's keys and values into every beam row and re-gathers the whole
cache at every step. Here the prompt KV stays ``[P, kv_heads, L, d]`` and only the generated
tokens are cached per beam (a small ``DynamicCache`` that is cheap to reorder). The attention
softmax runs jointly over both parts, so the result equals ordinary attention over the
concatenation; the prompt part is one batched matmul per prompt (its beams as the query rows).

The function is registered as a transformers attention implementation and switched on only for
the duration of a decode step (:func:`shared_prefix_attention_enabled`).

Device: every :class:`SharedPrefix` tensor lives on the device of the cache it was built from,
which is the model's (:func:`model_device`); the attention allocates only with ``new_zeros`` on
the query's device. Only the CPU path is tested: no CUDA device was available.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass

import torch
from torch import Tensor
from transformers import AttentionInterface, DynamicCache

IMPLEMENTATION = "recbias_shared_prefix"


@dataclass
class SharedPrefix:
    """Per-prompt KV of a batch and where each beam row sits. Passed to the model as a kwarg."""

    keys: list[Tensor]  # per layer [P, kv_heads, L, d]
    values: list[Tensor]  # per layer [P, kv_heads, L, d]
    key_mask: Tensor  # [P, L] bool, False on left padding
    slot: Tensor  # [rows] flat beam slot p * width + w of each model row
    width: int  # beam slots per prompt

    @classmethod
    def from_cache(cls, cache: DynamicCache, key_mask: Tensor, width: int) -> SharedPrefix:
        keys = [layer.keys for layer in cache.layers]
        values = [layer.values for layer in cache.layers]
        slot = torch.zeros(0, dtype=torch.long, device=key_mask.device)
        return cls(keys, values, key_mask.bool(), slot, width)


def model_device(model: torch.nn.Module) -> torch.device:
    """Device of the model's (first) parameters: where decoding creates every tensor it feeds in."""
    return next(model.parameters()).device


def supports_shared_prefix(model: torch.nn.Module) -> bool:
    """Full causal attention in every layer (no sliding windows, soft-capping or linear layers)."""
    cfg = model.config.get_text_config(decoder=True)
    layer_types = getattr(cfg, "layer_types", None) or ["full_attention"]
    sliding = getattr(cfg, "sliding_window", None) is not None and getattr(
        cfg, "use_sliding_window", True
    )
    capped = getattr(cfg, "attn_logit_softcapping", None) is not None
    return set(layer_types) == {"full_attention"} and not sliding and not capped


@contextlib.contextmanager
def eval_mode(model: torch.nn.Module) -> Iterator[None]:
    """Disable dropout inside the block and restore the caller's train/eval state afterwards."""
    was_training = model.training
    model.eval()
    try:
        yield
    finally:
        model.train(was_training)


@contextlib.contextmanager
def shared_prefix_attention_enabled(model: torch.nn.Module) -> Iterator[None]:
    """Route the model's attention through :func:`shared_prefix_attention` inside the block."""
    cfg = model.config
    previous = cfg._attn_implementation
    cfg._attn_implementation = IMPLEMENTATION
    try:
        yield
    finally:
        cfg._attn_implementation = previous


def shared_prefix_attention(
    module: torch.nn.Module,
    query: Tensor,
    key: Tensor,
    value: Tensor,
    attention_mask: Tensor | None,
    scaling: float | None = None,
    dropout: float = 0.0,
    recbias_prefix: SharedPrefix | None = None,
    **kwargs: object,
) -> tuple[Tensor, None]:
    """``query [R, H, 1, d]``; ``key, value [R, kv_heads, t, d]`` = generated tokens only.

    -> ``[R, 1, H, d]``, attention over the row's prompt (shared) followed by its own tokens.
    """
    if recbias_prefix is None or query.shape[2] != 1:
        raise RuntimeError(f"{IMPLEMENTATION} attention is for single-token decode steps only")
    pre = recbias_prefix
    rows, heads, _, dim = query.shape
    kv_heads = key.shape[1]
    group = heads // kv_heads
    scale = dim**-0.5 if scaling is None else scaling
    prompt_k, prompt_v = pre.keys[module.layer_idx], pre.values[module.layer_idx]
    n_prompts, _, length, _ = prompt_k.shape

    # Prompt part, batched per prompt: [P, kv_heads, W * group, L]
    q_slots = query.new_zeros((n_prompts * pre.width, kv_heads, group, dim))
    q_slots[pre.slot] = query.view(rows, kv_heads, group, dim)
    q_prompt = q_slots.view(n_prompts, pre.width, kv_heads, group, dim).transpose(1, 2)
    q_prompt = q_prompt.reshape(n_prompts, kv_heads, pre.width * group, dim)
    s_prompt = torch.matmul(q_prompt, prompt_k.transpose(-1, -2)).float() * scale
    s_prompt = s_prompt.masked_fill(~pre.key_mask[:, None, None, :], float("-inf"))
    s_prompt = _slots_to_rows(s_prompt, pre, kv_heads, group)  # [R, kv_heads, group, L]

    # Own generated tokens: [R, kv_heads, group, t]
    s_own = (
        torch.matmul(query.view(rows, kv_heads, group, dim), key.transpose(-1, -2)).float() * scale
    )

    probs = torch.softmax(torch.cat([s_prompt, s_own], dim=-1), dim=-1).to(value.dtype)
    p_prompt, p_own = probs[..., :length], probs[..., length:]
    out = torch.matmul(p_own, value)  # [R, kv_heads, group, d]
    p_slots = probs.new_zeros((n_prompts * pre.width, kv_heads, group, length))
    p_slots[pre.slot] = p_prompt
    p_slots = p_slots.view(n_prompts, pre.width, kv_heads, group, length).transpose(1, 2)
    o_prompt = torch.matmul(
        p_slots.reshape(n_prompts, kv_heads, pre.width * group, length), prompt_v
    )
    out = out + _slots_to_rows(o_prompt, pre, kv_heads, group)
    return out.reshape(rows, 1, heads, dim), None


def _slots_to_rows(x: Tensor, pre: SharedPrefix, kv_heads: int, group: int) -> Tensor:
    """``[P, kv_heads, W * group, n]`` -> the live rows ``[R, kv_heads, group, n]``."""
    n_prompts, n = x.shape[0], x.shape[-1]
    x = x.view(n_prompts, kv_heads, pre.width, group, n).transpose(1, 2)
    return x.reshape(n_prompts * pre.width, kv_heads, group, n)[pre.slot]


AttentionInterface.register(IMPLEMENTATION, shared_prefix_attention)
