"""Multi-head attention with exact additive biases, RoPE, logit noise and attention capture.

One module serves every attention of the generative recommender. Queries are candidate code
sequences ``x: [B, N, t, d]`` (N candidates per sample, t tokens each); they attend jointly to

* a shared memory ``mem: [B, M, d]`` (the encoder output, or the history states of a decoder-only
  model), with additive bias ``mem_bias`` broadcastable to ``[B, H, N, t, M]``, and/or
* their own sequence (causal self-attention), with bias ``self_bias`` broadcastable to
  ``[B, H, N, t, t]``.

The logits of both parts share one softmax. Biases hold padding/causal masks (``NEG``) and the
position term, e.g. ALiBi ``−m · distance`` with distance in items (Eq. 6 of the paper)::

    bias = alibi_bias(q_slot, k_slot, m)       # [..., Q, K] = −m · |q_slot − k_slot|

``AttentionControl`` is shared by all modules of a model: ``noise_sigma`` adds N(0, σ²) to every
logit in eval mode (drawn from ``generator``); ``record`` keeps the memory-attention probabilities
of the last call in ``last_mem_probs: [B, H, N, t, M]``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

NEG = -1e9  # finite mask value: a fully masked row gives uniform weights, never NaN


@dataclass
class AttentionControl:
    noise_sigma: float = 0.0
    generator: torch.Generator | None = None
    record: bool = False


def alibi_bias(q_slot: Tensor, k_slot: Tensor, m: float) -> Tensor:
    """[..., Q, K] = −m · |q_slot − k_slot| (slots are item indices, so distance is in items)."""
    return -m * (q_slot[..., :, None] - k_slot[..., None, :]).abs().to(torch.float32)


def rope(x: Tensor, pos: Tensor, base: float) -> Tensor:
    """Rotate the two halves of x [..., L, dh] by angles pos [..., L] · base^(−2i/dh)."""
    half = x.shape[-1] // 2
    freq = base ** (-torch.arange(half, device=x.device, dtype=torch.float32) / half)
    angle = pos.to(torch.float32)[..., None] * freq  # [..., L, half]
    cos, sin = angle.cos().to(x.dtype), angle.sin().to(x.dtype)
    a, b = x[..., :half], x[..., half:]
    return torch.cat([a * cos - b * sin, a * sin + b * cos], dim=-1)


class Attention(nn.Module):
    def __init__(
        self, d: int, heads: int, dropout: float, control: AttentionControl, rope_base: float | None
    ) -> None:
        super().__init__()
        self.heads, self.dh = heads, d // heads
        self.q, self.k, self.v, self.o = (nn.Linear(d, d) for _ in range(4))
        self.dropout = nn.Dropout(dropout)
        self.control, self.rope_base = control, rope_base
        self.last_mem_probs: Tensor | None = None

    def _split(self, x: Tensor) -> Tensor:
        """[..., L, d] → [..., H, L, dh] with the head axis before the sequence axis."""
        return x.unflatten(-1, (self.heads, self.dh)).transpose(-3, -2)

    def _rot(self, x: Tensor, pos: Tensor | None) -> Tensor:
        if self.rope_base is None or pos is None:
            return x
        return rope(x, pos.unsqueeze(-2), self.rope_base)  # pos [..., L] → [..., 1, L]

    def forward(
        self,
        x: Tensor,
        mem: Tensor | None = None,
        self_bias: Tensor | None = None,
        mem_bias: Tensor | None = None,
        x_pos: Tensor | None = None,
        mem_pos: Tensor | None = None,
    ) -> Tensor:
        """x [B, N, t, d] → [B, N, t, d]; x_pos [B|1, N|1, t], mem_pos [B|1, M] (RoPE only)."""
        q = self._rot(self._split(self.q(x)), x_pos) * self.dh**-0.5  # [B, N, H, t, dh]
        parts: list[Tensor] = []
        if mem is not None:
            km = self._rot(self._split(self.k(mem)), mem_pos)  # [B, H, M, dh]
            logits = torch.einsum("bnhqd,bhmd->bnhqm", q, km)
            parts.append(logits if mem_bias is None else logits + mem_bias.transpose(1, 2))
        if self_bias is not None:
            ks = self._rot(self._split(self.k(x)), x_pos)  # [B, N, H, t, dh]
            parts.append(torch.einsum("bnhqd,bnhkd->bnhqk", q, ks) + self_bias.transpose(1, 2))
        probs = self._softmax(torch.cat(parts, dim=-1))  # [B, N, H, t, M + t]
        n_mem = 0 if mem is None else mem.shape[1]
        if mem is not None and self.control.record:
            self.last_mem_probs = probs[..., :n_mem].transpose(1, 2).detach()
        probs = self.dropout(probs)
        out = torch.zeros_like(q)
        if mem is not None:
            out = out + torch.einsum(
                "bnhqm,bhmd->bnhqd", probs[..., :n_mem], self._split(self.v(mem))
            )
        if self_bias is not None:
            vs = self._split(self.v(x))
            out = out + torch.einsum("bnhqk,bnhkd->bnhqd", probs[..., n_mem:], vs)
        return self.o(out.transpose(-3, -2).flatten(-2))

    def _softmax(self, logits: Tensor) -> Tensor:
        logits = logits.float()
        sigma = self.control.noise_sigma
        if sigma > 0 and not self.training:
            gen = self.control.generator
            noise = torch.randn(logits.shape, generator=gen, device=logits.device)
            logits = logits + sigma * noise
        return torch.softmax(logits, dim=-1)
