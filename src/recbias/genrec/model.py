"""The transformer over semantic-ID tokens: encoder-decoder (the paper's §3) or decoder-only.

    net = GenRecTransformer(cfg, layout)
    memory = net.memory(history_batch)            # encode the history once
    logits = net.decode(memory, dec_in)           # dec_in [B, N, t] → logits [B, N, t, vocab]

``dec_in`` holds N candidate prefixes per sample (BOS, c_0, ..., c_{t−2}); position j predicts
level j. Training uses N = 1, beam search N = beam width, exact scoring N = n_items, always with
the history encoded once per sample. Positions are item slots (``HistoryBatch.slot``; the target is
slot ``max_len``), so ALiBi and RoPE measure distance in items, not tokens:

* ``none``: no position signal (the encoder is permutation-equivariant over history items);
* ``absolute``: a learned embedding per slot, added to the token embeddings;
* ``alibi``: logit bias −m·|slot_q − slot_k| in every attention (Eq. 6, ψ(d) = d);
* ``rope``: queries/keys rotated by their slot.

Decoder-only runs the history causally through the decoder blocks, keeps each block's input, and
lets candidates attend to those states plus their own prefix in one softmax: the same numbers as
running ``history + BOS + code`` as one causal sequence.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from recbias.genrec.attention import NEG, Attention, AttentionControl, alibi_bias
from recbias.genrec.codes import HistoryBatch, TokenLayout
from recbias.genrec.config import GenRecConfig


@dataclass
class Memory:
    """Encoded histories. states: [B, S, d] (encoder output) or one [B, S, d] per decoder block
    (decoder-only); bias: [B, 1, 1, 1, S] additive (padding + target-to-history position bias);
    pos: [B, S] item slots; valid: [B, S]."""

    states: Tensor | list[Tensor]
    bias: Tensor
    pos: Tensor
    valid: Tensor


class FeedForward(nn.Sequential):
    def __init__(self, d: int, hidden: int, dropout: float) -> None:
        super().__init__(nn.Linear(d, hidden), nn.GELU(), nn.Linear(hidden, d), nn.Dropout(dropout))


class Block(nn.Module):
    """Pre-norm block: self/joint attention, optional cross-attention, feed-forward."""

    def __init__(self, cfg: GenRecConfig, control: AttentionControl, cross: bool) -> None:
        super().__init__()
        rope_base = cfg.rope_base if cfg.position == "rope" else None
        self.ln1, self.ln2, self.ln3 = (nn.LayerNorm(cfg.d_model) for _ in range(3))
        self.attn = Attention(cfg.d_model, cfg.heads, cfg.dropout, control, rope_base)
        self.cross = (
            Attention(cfg.d_model, cfg.heads, cfg.dropout, control, rope_base) if cross else None
        )
        self.ff = FeedForward(cfg.d_model, cfg.ff_dim, cfg.dropout)
        self.drop = nn.Dropout(cfg.dropout)

    def forward(
        self, x: Tensor, self_bias: Tensor, x_pos: Tensor | None, memory: Memory | None = None,
        joint: Tensor | None = None,
    ) -> Tensor:  # fmt: skip
        """x: [B, N, t, d]. ``joint`` ([B, S, d], this block's history input) is attended in the
        same softmax as x itself (decoder-only); ``memory`` by the cross-attention."""
        h = self.ln1(x)
        mem = None if joint is None else self.ln1(joint)
        mem_bias = None if memory is None or joint is None else memory.bias
        mem_pos = None if memory is None else memory.pos
        x = x + self.drop(self.attn(h, mem, self_bias, mem_bias, x_pos, mem_pos))
        if self.cross is not None and memory is not None:
            assert isinstance(memory.states, Tensor)
            x = x + self.drop(
                self.cross(self.ln2(x), memory.states, None, memory.bias, x_pos, memory.pos)
            )
        return x + self.ff(self.ln3(x))


def _causal(t: int, device: torch.device) -> Tensor:
    """[t, t] additive causal mask."""
    return torch.full((t, t), NEG, device=device).triu(1)


class GenRecTransformer(nn.Module):
    def __init__(self, cfg: GenRecConfig, layout: TokenLayout) -> None:
        super().__init__()
        self.cfg, self.layout = cfg, layout
        self.control = AttentionControl()
        self.tok = nn.Embedding(layout.vocab, cfg.d_model)
        self.pos = (
            nn.Embedding(cfg.max_len + 1, cfg.d_model) if cfg.position == "absolute" else None
        )
        self.drop = nn.Dropout(cfg.dropout)
        enc_dec = cfg.architecture == "encoder_decoder"
        n_enc = cfg.encoder_layers if enc_dec else 0
        self.encoder = nn.ModuleList(Block(cfg, self.control, cross=False) for _ in range(n_enc))
        self.enc_ln = nn.LayerNorm(cfg.d_model)
        self.decoder = nn.ModuleList(
            Block(cfg, self.control, cross=enc_dec) for _ in range(cfg.decoder_layers)
        )
        self.out_ln = nn.LayerNorm(cfg.d_model)
        self.head = nn.Linear(cfg.d_model, layout.vocab)
        self.register_buffer("level_mask", layout.level_mask(), persistent=False)

    def _embed(self, tokens: Tensor, slot: Tensor) -> Tensor:
        x = self.tok(tokens)
        if self.pos is not None:
            x = x + self.pos(slot)
        return self.drop(x)

    def _position_bias(self, q_slot: Tensor, k_slot: Tensor) -> Tensor:
        """[B, Q, K]: −m · item distance under alibi, zeros otherwise."""
        return alibi_bias(q_slot, k_slot, self.cfg.alibi_m if self.cfg.position == "alibi" else 0.0)

    def _rope_pos(self, slot: Tensor) -> Tensor | None:
        return slot if self.cfg.position == "rope" else None

    def memory(self, hist: HistoryBatch) -> Memory:
        """Encode histories [B, S] once; see :class:`Memory`."""
        slot, valid = hist.slot, hist.valid
        pad = torch.where(valid, 0.0, NEG)[:, None, None, None, :]  # [B, 1, 1, 1, S]
        target = torch.full_like(slot[:, :1], self.cfg.max_len)  # [B, 1]
        bias = pad + self._position_bias(target, slot)[:, None, None]  # [B, 1, 1, 1, S]
        self_bias = pad + self._position_bias(slot, slot)[:, None, None]  # [B, 1, 1, S, S]
        x = self._embed(hist.tokens, slot)[:, None]  # [B, 1, S, d]
        pos = self._rope_pos(slot)
        x_pos = None if pos is None else pos[:, None]
        if self.cfg.architecture == "encoder_decoder":
            for block in self.encoder:
                x = block(x, self_bias, x_pos)
            return Memory(self.enc_ln(x[:, 0]), bias, slot, valid)
        self_bias = self_bias + _causal(slot.shape[1], slot.device)
        states = []
        for block in self.decoder:
            states.append(x[:, 0])
            x = block(x, self_bias, x_pos)
        return Memory(states, bias, slot, valid)

    def decode(self, memory: Memory, dec_in: Tensor) -> Tensor:
        """dec_in [B, N, t] (BOS + code prefix) → level-masked logits [B, N, t, vocab]."""
        t = dec_in.shape[-1]
        slot = torch.full_like(dec_in, self.cfg.max_len)
        x = self._embed(dec_in, slot)
        self_bias = _causal(t, dec_in.device)[None, None, None]  # [1, 1, 1, t, t]
        pos = self._rope_pos(slot[:1, :1])
        for i, block in enumerate(self.decoder):
            joint = memory.states[i] if isinstance(memory.states, list) else None
            x = block(x, self_bias, pos, memory, joint)
        logits = self.head(self.out_ln(x)).float()
        return logits + self.level_mask[:t]

    def forward(self, hist: HistoryBatch, dec_in: Tensor) -> Tensor:
        return self.decode(self.memory(hist), dec_in)

    def memory_attention(self) -> Tensor:
        """[B, N, t, S] memory-attention probabilities of the last ``decode``, averaged over heads
        and decoder blocks (cross-attention, or the history part of decoder-only attention)."""
        mods = [b.cross if b.cross is not None else b.attn for b in self.decoder]
        probs = [m.last_mem_probs for m in mods if m is not None and m.last_mem_probs is not None]
        return torch.stack(probs).mean(dim=(0, 2))
