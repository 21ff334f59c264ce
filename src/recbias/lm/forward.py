"""The language model's training forward: logits at the supervised positions only.

    logits = target_logits(model, batch)                     # [n_tok, vocab]
    logits = target_logits(model, batch, share_prefix=True)  # the shared prompt prefix once

Used by the training loop (:mod:`recbias.train.loop`), by objectives that run extra forwards
(GDRT, CFT) and by diagnostics that measure per-token losses.
"""

from __future__ import annotations

from typing import Any

import torch

from recbias.lm.batching import Batch
from recbias.lm.token_context import context_width, preceding_tokens


def causal_lm(model: torch.nn.Module) -> Any:
    """The underlying ``*ForCausalLM`` (unwraps PEFT; LoRA layers stay injected)."""
    return model.get_base_model() if hasattr(model, "get_base_model") else model


MIN_SHARED_PREFIX = 8  # shorter common prefixes are not worth a second forward call


def shared_prefix_length(batch: Batch) -> int:
    """Leading tokens that every row of the batch shares, before any supervised position.

    The prompts of a template start with the same task description, so its hidden states and
    keys/values are the same in every row: they can be computed once. Capped so that every
    position whose next token is supervised lies after the prefix.
    """
    ids = batch.input_ids
    if ids.shape[0] < 2:
        return 0
    same = ((ids == ids[:1]) & batch.attention_mask.bool()).all(0)
    common = int(same.int().cumprod(0).sum())
    first_supervised = int(batch.target_mask.int().argmax(1).min())
    return min(common, first_supervised)


def _decode_with_shared_prefix(decoder: torch.nn.Module, batch: Batch, n: int) -> torch.Tensor:
    """[batch, seq-n, hidden] the decoder's states after the first ``n`` (shared) tokens.

    The prefix runs once (batch 1); its per-layer keys/values are broadcast to every row, so the
    rows' queries attend to them exactly as in the full forward, and gradients from all rows sum
    into the one prefix computation.
    """
    prefix = decoder(input_ids=batch.input_ids[:1, :n], use_cache=True)
    cache = prefix.past_key_values
    rows = batch.input_ids.shape[0]
    for layer in cache.layers:
        layer.keys = layer.keys.expand(rows, -1, -1, -1)
        layer.values = layer.values.expand(rows, -1, -1, -1)
    width = context_width(decoder)  # an input encoder that reads tokens inside the prefix
    keys = batch.input_ids[:, max(0, n - width) :] if width else None
    with preceding_tokens(decoder, keys):
        return decoder(
            input_ids=batch.input_ids[:, n:],
            attention_mask=_mask(batch),
            past_key_values=cache,
            use_cache=True,
        ).last_hidden_state


def target_logits(
    model: torch.nn.Module,
    batch: Batch,
    decoder: torch.nn.Module | None = None,
    share_prefix: bool = False,
) -> torch.Tensor:
    """[n_tok, vocab] logits at the supervised positions only (skips the LM head elsewhere).

    ``decoder`` replaces the model's own decoder stack (e.g. a ``torch.compile``d wrapper of it).
    ``share_prefix`` computes the rows' common leading tokens once (:func:`shared_prefix_length`);
    the result equals the plain forward up to floating-point summation order. A batch prepared
    with :func:`~recbias.lm.batching.precompute_targets` uses the prefix and target positions
    recorded there (no device synchronisation). A right-padded batch runs without its attention
    mask (:func:`_mask`).
    """
    lm = causal_lm(model)
    stack = decoder if decoder is not None else lm.get_decoder()
    known = batch.precomputed.get("prefix")
    n = known if known is not None else (shared_prefix_length(batch) if share_prefix else 0)
    if not share_prefix or n < MIN_SHARED_PREFIX:
        n = 0
    if n:
        hidden = _decode_with_shared_prefix(stack, batch, n)
    else:
        hidden = stack(
            input_ids=batch.input_ids, attention_mask=_mask(batch), use_cache=False
        ).last_hidden_state
    return lm.get_output_embeddings()(_target_states(hidden[:, :-1], batch, n))


def _mask(batch: Batch) -> torch.Tensor | None:
    """The attention mask the forward needs: none for a right-padded batch.

    Under causal attention a real token only sees the tokens before it, all real in a right-padded
    row, so its state (and every supervised logit and gradient) is the same without the mask; only
    the padding positions' states change, and nothing reads them. Without a mask, attention runs as
    plain causal attention (SDPA's ``is_causal``, flash kernels on CUDA) and ``transformers`` does not
    inspect the mask's values, which would wait for the device.
    """
    return None if batch.right_padded else batch.attention_mask


def _target_states(hidden: torch.Tensor, batch: Batch, n: int) -> torch.Tensor:
    """``hidden [batch, seq-1-n, H]`` -> ``[n_tok, H]`` at the supervised positions."""
    pre = batch.precomputed
    if pre.get("prefix") == n and "target_rows" in pre:
        return hidden[pre["target_rows"], pre["target_cols"]]
    return hidden[batch.target_mask[:, n:]]
