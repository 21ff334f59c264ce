"""Token layout of semantic IDs and the code trie used for constrained decoding.

    layout = TokenLayout(sizes=[32, 32, 32, 3])      # L code levels + suffix level
    tokens = layout.item_tokens(codes)                 # [n_items, T] global token ids, T = L+1
    trie = CodeTrie(codes, sizes)                      # trie.children[t]: [n_prefix_t, sizes[t]]
    hist = encode_histories(samples["history"], tokens, max_len=10)

Token ids: 0 = PAD, 1 = BOS, then level t owns ``sizes[t]`` ids starting at ``offsets[t]``, so a
code's meaning depends on its level (as in TIGER / cornac).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

PAD, BOS = 0, 1
N_SPECIAL = 2


@dataclass(frozen=True)
class TokenLayout:
    sizes: tuple[int, ...]

    @property
    def depth(self) -> int:
        """Tokens per item T (L levels + suffix)."""
        return len(self.sizes)

    @property
    def offsets(self) -> tuple[int, ...]:
        return tuple(N_SPECIAL + int(sum(self.sizes[:t])) for t in range(self.depth))

    @property
    def vocab(self) -> int:
        return N_SPECIAL + int(sum(self.sizes))

    def item_tokens(self, codes: np.ndarray) -> Tensor:
        """[n_items, T] global token ids of every item's code."""
        return torch.as_tensor(codes + np.asarray(self.offsets)[None, :], dtype=torch.long)

    def level_mask(self) -> Tensor:
        """[T, vocab] additive mask: 0 on level t's token range, −inf elsewhere."""
        mask = torch.full((self.depth, self.vocab), float("-inf"))
        for t, (off, size) in enumerate(zip(self.offsets, self.sizes, strict=True)):
            mask[t, off : off + size] = 0.0
        return mask


class CodeTrie:
    """Prefix trie over item codes; ``children[t][p, c]`` = child prefix id (item id at the last
    level) of prefix ``p`` at depth t followed by level-t code ``c``, or −1 if no item has it."""

    def __init__(self, codes: np.ndarray, sizes: Sequence[int]) -> None:
        n, depth = codes.shape
        prefix = np.zeros(n, dtype=np.int64)
        n_prefix = 1
        self.children: list[Tensor] = []
        self.item_prefix: list[Tensor] = []  # [n_items] prefix id of each item at depth t
        for t in range(depth):
            self.item_prefix.append(torch.as_tensor(prefix))
            key = prefix * sizes[t] + codes[:, t]
            table = np.full((n_prefix, sizes[t]), -1, dtype=np.int64)
            if t == depth - 1:
                table[prefix, codes[:, t]] = np.arange(n)
            else:
                uniq, prefix = np.unique(key, return_inverse=True)
                prefix = prefix.reshape(-1)
                table[uniq // sizes[t], uniq % sizes[t]] = np.arange(len(uniq))
                n_prefix = len(uniq)
            self.children.append(torch.as_tensor(table))

    def to(self, device: torch.device | str) -> CodeTrie:
        self.children = [c.to(device) for c in self.children]
        self.item_prefix = [p.to(device) for p in self.item_prefix]
        return self


@dataclass(frozen=True)
class HistoryBatch:
    """Left-padded histories flattened to code tokens (S = max_len · T).

    tokens: [B, S] global ids (PAD on padding); slot: [B, S] item slot 0..max_len−1 (max_len−1 =
    most recent item, the target is slot max_len); valid: [B, S] bool, False on padding.
    """

    tokens: Tensor
    slot: Tensor
    valid: Tensor

    def to(self, device: torch.device | str) -> HistoryBatch:
        return HistoryBatch(self.tokens.to(device), self.slot.to(device), self.valid.to(device))


def encode_histories(
    histories: Sequence[Sequence[int]], item_tokens: Tensor, max_len: int
) -> HistoryBatch:
    """Keep the last ``max_len`` items of each history, left-pad, and spell them in code tokens."""
    depth = item_tokens.shape[1]
    ids = torch.full((len(histories), max_len), -1, dtype=torch.long)
    for row, hist in enumerate(histories):
        recent = list(hist)[-max_len:]
        if recent:
            ids[row, max_len - len(recent) :] = torch.as_tensor(recent, dtype=torch.long)
    valid_items = ids >= 0  # [B, max_len]
    tokens = item_tokens[ids.clamp(min=0)]  # [B, max_len, T]
    tokens = tokens.masked_fill(~valid_items[..., None], PAD).reshape(len(histories), -1)
    slot = torch.arange(max_len).repeat_interleave(depth).expand(len(histories), -1)
    valid = valid_items.repeat_interleave(depth, dim=1)
    return HistoryBatch(tokens, slot.contiguous(), valid)
