"""A tiny Llama with semantic-ID tokens (3 levels x 4 codes) for the PrefixMem tests."""

from __future__ import annotations

import torch

import tiny
from recbias.sidllm.prefixmem import PrefixMemConfig

BASE_VOCAB = 64
LEVELS, CODES = 3, 4
SID0 = BASE_VOCAB  # token of (level l, code c) = SID0 + l * CODES + c
VOCAB = BASE_VOCAB + LEVELS * CODES
ITEM_CODES = [
    (0, 0, 0), (0, 0, 1), (0, 1, 2), (0, 3, 3), (1, 0, 0), (1, 2, 1),
    (2, 2, 2), (2, 1, 3), (3, 0, 1), (3, 3, 0), (3, 3, 2), (1, 1, 1),
]  # fmt: skip


def sid(level: int, code: int) -> int:
    return SID0 + level * CODES + code


def item_tokens(codes: tuple[int, ...]) -> list[int]:
    """An item's SID run followed by EOS (the trie sequence)."""
    return [sid(lvl, c) for lvl, c in enumerate(codes)] + [tiny.EOS]


def vocab_tensors(vocab: int = VOCAB) -> tuple[torch.Tensor, torch.Tensor]:
    """``level_of, code_of [vocab]``: -1 on text tokens."""
    level = torch.full((vocab,), -1, dtype=torch.long)
    code = torch.full((vocab,), -1, dtype=torch.long)
    for lvl in range(LEVELS):
        for c in range(CODES):
            level[sid(lvl, c)], code[sid(lvl, c)] = lvl, c
    return level, code


def sid_model(seed: int = 0, layers: int = 2):
    """A tied-embedding tiny Llama whose vocabulary was resized to hold the SID tokens."""
    model = tiny.tiny_llama(BASE_VOCAB, seed=seed, layers=layers)
    model.resize_token_embeddings(VOCAB, mean_resizing=False)
    return model


def loud_config(**kw: object) -> PrefixMemConfig:
    """Small tables and a non-zero W_out, so the term visibly changes the model."""
    base: dict[str, object] = dict(
        heads=2, memory_dim=8, table_rows=101, table_init_std=1.0, out_init_std=0.5
    )
    base.update(kw)
    return PrefixMemConfig(**base)  # type: ignore[arg-type]


def history_prompt(history: list[int], text: list[int]) -> list[int]:
    """Text, then each history item's SID run separated by a text token, then ``text``."""
    out = [5, 6, 7, 8, 9, 10, 11, 12, 13]
    for i in history:
        out += [sid(lvl, c) for lvl, c in enumerate(ITEM_CODES[i])] + [20]
    return out + text


def sid_samples(n: int = 8) -> list:
    """``n`` training samples: two history items' SID runs in the prompt, an item's run as target."""
    from recbias.lm.batching import TokenizedSample
    from recbias.prompts import EncodedPrompt

    out = []
    for i in range(n):
        prompt = history_prompt([i % 12, (i * 5 + 1) % 12], [30, 31])
        target = item_tokens(ITEM_CODES[(i * 7) % 12])
        out.append(TokenizedSample(i, (i * 7) % 12, EncodedPrompt(prompt, [], target)))
    return out
