"""Semantic-ID tokens in a causal LM's vocabulary: one new token per (level, code).

    vocab = add_sid_tokens(tokenizer, sizes=[32, 32, 32, 2])   # levels a, b, c + suffix level d
    vocab.tokens[1][5]                     # '<b_5>'
    vocab.text(codes[item])                # '<a_12><b_5><c_30><d_0>' (LC-Rec / MiniOneRec style)
    vocab.level_of[token_id], vocab.code_of[token_id]   # -1 for ordinary tokens

Level ``l`` (0-based; the last one is the collision suffix) is spelled with the ``l``-th letter, so
``<a_3>`` and ``<b_3>`` are different tokens: a code's meaning depends on its level. Tokens are
added in level-major, code-minor order, so the same sizes on the same base tokenizer always give
the same ids; a tokenizer that already has them (a saved SID checkpoint) keeps its ids.

:class:`SidVocab` is also what a SID encoder (e.g. PrefixMem) receives: ``level_of`` / ``code_of``
map every token id of the resized model to its level and code.
"""

from __future__ import annotations

import string
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from transformers import PreTrainedTokenizerBase

from recbias.errors import ConfigError, ModelError

LETTERS = string.ascii_lowercase


def sid_token(level: int, code: int) -> str:
    """``<a_12>``: the token of ``code`` at 0-based ``level``."""
    return f"<{LETTERS[level]}_{code}>"


@dataclass(frozen=True)
class SidVocab:
    """Where the SID tokens sit in the vocabulary.

    tokens[l][c], token_ids[l][c]: the string and id of code c at level l (levels: L code levels,
    then the collision suffix). level_of, code_of: LongTensor [V] over the model's V embedding
    rows, the 0-based level / the code within it, -1 for every non-SID token.
    """

    tokens: list[list[str]]
    token_ids: list[list[int]]
    level_of: torch.Tensor
    code_of: torch.Tensor

    @property
    def n_levels(self) -> int:
        """Tokens per item: L code levels + the suffix level."""
        return len(self.tokens)

    @property
    def sizes(self) -> list[int]:
        return [len(level) for level in self.tokens]

    @property
    def ids(self) -> list[int]:
        """Every SID token id, level-major."""
        return [i for level in self.token_ids for i in level]

    def text(self, codes: Sequence[int]) -> str:
        """The SID string of one item's codes ``[L+1]``."""
        return "".join(self.tokens[level][int(c)] for level, c in enumerate(codes))

    def item_ids(self, codes: Sequence[int]) -> list[int]:
        """The token ids of one item's codes ``[L+1]``."""
        return [self.token_ids[level][int(c)] for level, c in enumerate(codes)]

    def with_rows(self, n_rows: int) -> SidVocab:
        """The same tokens with ``level_of`` / ``code_of`` over ``n_rows`` embedding rows."""
        return build_vocab(self.tokens, self.token_ids, n_rows)


def build_vocab(tokens: list[list[str]], token_ids: list[list[int]], n_rows: int) -> SidVocab:
    level_of = torch.full((n_rows,), -1, dtype=torch.long)
    code_of = torch.full((n_rows,), -1, dtype=torch.long)
    for level, ids in enumerate(token_ids):
        index = torch.as_tensor(ids, dtype=torch.long)
        if len(ids) and int(index.max()) >= n_rows:
            raise ModelError(f"SID token id {int(index.max())} >= the model's {n_rows} rows")
        level_of[index] = level
        code_of[index] = torch.arange(len(ids))
    return SidVocab(tokens, token_ids, level_of, code_of)


def add_sid_tokens(tokenizer: PreTrainedTokenizerBase, sizes: Sequence[int]) -> SidVocab:
    """Add ``sizes[l]`` tokens per level to ``tokenizer`` (in place) and map them."""
    if len(sizes) > len(LETTERS):
        raise ConfigError(
            f"config key 'items.sid.levels': at most {len(LETTERS) - 1} levels, got {len(sizes) - 1}"
        )
    tokens = [[sid_token(level, c) for c in range(size)] for level, size in enumerate(sizes)]
    tokenizer.add_tokens([t for level in tokens for t in level])
    token_ids = [tokenizer.convert_tokens_to_ids(level) for level in tokens]
    for level, ids in zip(tokens, token_ids, strict=True):
        check_single_tokens(tokenizer, level, ids)
    return build_vocab(tokens, token_ids, len(tokenizer))


def check_single_tokens(tok: PreTrainedTokenizerBase, tokens: list[str], ids: list[int]) -> None:
    """Every SID token string must encode to exactly its one id."""
    for text, tid in zip(tokens, ids, strict=True):
        got = tok(text, add_special_tokens=False).input_ids
        if got != [tid]:
            raise ModelError(f"SID token {text!r} encodes to {got}, expected the single id {tid}")
