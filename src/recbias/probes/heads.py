"""An isolated single attention head: the minimal setting of the paper's Props. 4.1 and 4.5.

A history of ``n_items`` items, each written as ``tokens_per_item`` tokens (a semantic ID), sits in
the encoder memory, oldest first. One decoder query attends over its ``T = n_items *
tokens_per_item`` tokens with logits ``s_j = content_j + m * b_j (+ noise_j)``, where ``b_j =
-distance_j`` is the ALiBi bias (distance 1 for the most recent token) and ``m`` the positional
strength. Masses are then summed per item, so that windows are measured in items, not tokens.

    bias = alibi_bias(history_len=10, tokens_per_item=3)            # [30]
    w = attention(np.zeros(30), m=0.5, bias=bias)                   # [30], sums to 1
    near_mass(item_mass(w, tokens_per_item=3), window=2)            # mass on the last 2 items
"""

from __future__ import annotations

import numpy as np


def alibi_bias(history_len: int, tokens_per_item: int) -> np.ndarray:
    """ALiBi positional logits ``-distance`` of every history token, oldest first. → [T]."""
    n_tokens = history_len * tokens_per_item
    return -np.arange(n_tokens, 0, -1, dtype=np.float64)


def softmax(logits: np.ndarray, axis: int = -1) -> np.ndarray:
    """Numerically stable softmax along ``axis`` (any shape)."""
    shifted = logits - logits.max(axis=axis, keepdims=True)
    e = np.exp(shifted)
    return e / e.sum(axis=axis, keepdims=True)


def attention(
    content: np.ndarray, m: float, bias: np.ndarray, noise: np.ndarray | None = None
) -> np.ndarray:
    """Attention weights of one head. content: [..., T], bias: [T], noise: [..., T] → [..., T]."""
    logits = content + m * bias
    if noise is not None:
        logits = logits + noise
    return softmax(logits)


def item_mass(token_weights: np.ndarray, tokens_per_item: int) -> np.ndarray:
    """Sum token weights per item: [..., L * c] → [..., L] (item order unchanged, oldest first)."""
    shape = token_weights.shape
    if shape[-1] % tokens_per_item:
        raise ValueError(f"{shape[-1]} tokens do not split into items of {tokens_per_item}")
    return token_weights.reshape(*shape[:-1], shape[-1] // tokens_per_item, tokens_per_item).sum(-1)


def near_mass(item_weights: np.ndarray, window: int) -> np.ndarray:
    """Attention mass on the most recent ``window`` items (the last columns): [..., L] → [...]."""
    return item_weights[..., -window:].sum(-1)


def near_mass_derivative(
    content: np.ndarray, m: float, bias: np.ndarray, tokens_per_item: int, window: int
) -> np.ndarray:
    """d A_N / d m = sum_{j in N} a_j (b_j - sum_l a_l b_l) (Appendix 6.1, Eq. 24). → [...]."""
    a = attention(content, m, bias)
    centred = bias - (a * bias).sum(-1, keepdims=True)
    near = np.zeros(bias.shape[-1], dtype=bool)
    near[-window * tokens_per_item :] = True
    return (a * centred)[..., near].sum(-1)


def sampled_content(
    rng: np.random.Generator, draws: int, n_tokens: int, head_dim: int
) -> np.ndarray:
    """Content logits ``q . k_j / sqrt(d)`` for random Gaussian queries and keys. → [draws, T]."""
    q = rng.standard_normal((draws, 1, head_dim))
    k = rng.standard_normal((draws, n_tokens, head_dim))
    return (q * k).sum(-1) / np.sqrt(head_dim)
