"""Input embeddings that look back at preceding tokens, and how piecewise forwards feed them.

A plain token embedding maps each id on its own. Some input encoders (the PrefixMem semantic-ID
encoder in :mod:`recbias.sidllm.prefixmem`) add a term that depends on up to ``context_tokens``
*preceding* tokens too. A forward over a whole sequence gives them everything they need; forwards
that feed a sequence in pieces over a KV cache (a shared prompt header, one generated token per
beam, an item continuation after the prompt cache) do not. Those callers pass the tokens with
:func:`preceding_tokens`::

    width = context_width(model)                        # 0: a plain embedding, nothing to do
    keys = torch.cat([previous[:, -width:], ids], 1)    # [rows, width + S], aligned on the right
    with preceding_tokens(model, keys):
        model(input_ids=ids, past_key_values=cache, ...)

``keys`` ends with the ids being fed (aligned on the right with ``input_ids``); the columns before
them are the tokens that precede each row's first fed token, ``-1`` where there is none. With a
plain embedding both functions are no-ops, so callers need no special case.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Protocol, runtime_checkable

import torch
from torch import Tensor


@runtime_checkable
class ContextEmbedding(Protocol):
    """A module inside the input embedding whose output at a position depends on up to
    ``context_tokens`` tokens before it. ``token_context(keys)`` makes the next forward read
    ``keys: [rows, context + S]`` (aligned on the right with that forward's ``input_ids``)."""

    context_tokens: int

    def token_context(self, keys: Tensor) -> contextlib.AbstractContextManager[None]: ...


def context_modules(model: torch.nn.Module) -> list[ContextEmbedding]:
    """The :class:`ContextEmbedding` modules inside ``model``'s input embedding (PEFT unwrapped)."""
    get = getattr(model, "get_input_embeddings", None)
    embedding = get() if get is not None else None
    if embedding is None:
        return []
    return [m for m in embedding.modules() if isinstance(m, ContextEmbedding)]


def context_width(model: torch.nn.Module) -> int:
    """Tokens before a position that the input embedding reads (0 for a plain embedding)."""
    return max((int(m.context_tokens) for m in context_modules(model)), default=0)


@contextlib.contextmanager
def preceding_tokens(model: torch.nn.Module, keys: Tensor | None) -> Iterator[None]:
    """Inside the block, the model's next forward embeds with ``keys`` (module docstring)."""
    modules = context_modules(model) if keys is not None else []
    with contextlib.ExitStack() as stack:
        for module in modules:
            stack.enter_context(module.token_context(keys))
        yield
