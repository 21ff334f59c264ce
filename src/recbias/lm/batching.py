"""Tokenized training samples, length-bucketed batches and collation.

A training batch is right-padded; labels are ``-100`` everywhere except on target tokens, so the
supervised positions are exactly the target span recorded by :mod:`recbias.prompts`.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass, field

import pandas as pd
import torch

from recbias.errors import ModelError
from recbias.prompts import EncodedPrompt, PromptBuilder

IGNORE = -100


@dataclass
class TokenizedSample:
    sample_id: int
    target_item: int
    prompt: EncodedPrompt

    @property
    def length(self) -> int:
        return len(self.prompt.input_ids) + len(self.prompt.target_ids)


@dataclass
class Batch:
    """A right-padded micro-batch.

    input_ids, attention_mask, labels: [batch, seq]. ``target_pos``: [n_tok] flat indices into the
    ``[batch, seq-1]`` grid of positions whose next token is supervised; ``meta`` holds per-token
    tensors aligned with it (``sample``: row in the batch, ``position``: index within the target,
    ``target_length``), and objectives may add their own.
    """

    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    labels: torch.Tensor
    sample_ids: torch.Tensor
    target_items: torch.Tensor
    meta: dict[str, torch.Tensor] = field(default_factory=dict)

    @property
    def target_labels(self) -> torch.Tensor:
        """[n_tok] the supervised next-token ids, in row-major order."""
        shifted = self.labels[:, 1:]
        return shifted[shifted != IGNORE]

    @property
    def target_mask(self) -> torch.Tensor:
        """[batch, seq-1] True where the hidden state at t predicts a supervised token t+1."""
        return self.labels[:, 1:] != IGNORE

    @property
    def n_tokens(self) -> int:
        return int(self.attention_mask.sum())


def encode_samples(
    builder: PromptBuilder,
    samples: pd.DataFrame,
    titles: Sequence[str],
    max_length: int,
    with_target: bool = True,
) -> list[TokenizedSample]:
    """Tokenize every sample; a prompt that does not fit the context is an error naming it."""
    out = []
    for sid, hist, target in zip(
        samples["sample_id"], samples["history"], samples["target"], strict=True
    ):
        hist_items = [int(i) for i in hist]
        enc = builder.encode(
            [titles[i] for i in hist_items],
            hist_items,
            titles[int(target)] if with_target else None,
        )
        total = len(enc.input_ids) + len(enc.target_ids)
        if total > max_length:
            raise ModelError(
                f"sample {sid}: prompt+target is {total} tokens, longer than the model's context "
                f"of {max_length} (reduce data.prepare.max_history or raise model.max_length)"
            )
        out.append(TokenizedSample(int(sid), int(target), enc))
    return out


def bucketed_batches(
    lengths: Sequence[int], batch_size: int, seed: int, bucket_factor: int = 32
) -> list[list[int]]:
    """Shuffle, sort by length inside windows of ``batch_size*bucket_factor``, batch, shuffle batches.

    Similar lengths share a batch (little padding) while the order stays random and seeded.
    """
    rng = random.Random(seed)
    order = list(range(len(lengths)))
    rng.shuffle(order)
    window = max(batch_size * bucket_factor, batch_size)
    batches: list[list[int]] = []
    for start in range(0, len(order), window):
        chunk = sorted(order[start : start + window], key=lambda i: (lengths[i], i))
        batches.extend(chunk[i : i + batch_size] for i in range(0, len(chunk), batch_size))
    rng.shuffle(batches)
    return batches


def collate(samples: Sequence[TokenizedSample], pad_id: int) -> Batch:
    width = max(s.length for s in samples)
    n = len(samples)
    ids = torch.full((n, width), pad_id, dtype=torch.long)
    mask = torch.zeros((n, width), dtype=torch.long)
    labels = torch.full((n, width), IGNORE, dtype=torch.long)
    positions, lengths = [], []
    for row, s in enumerate(samples):
        p, t = s.prompt.input_ids, s.prompt.target_ids
        ids[row, : len(p) + len(t)] = torch.tensor(p + t)
        mask[row, : len(p) + len(t)] = 1
        labels[row, len(p) : len(p) + len(t)] = torch.tensor(t)
        positions.append(torch.arange(len(t)))
        lengths.append(torch.full((len(t),), len(t)))
    batch = Batch(
        ids,
        mask,
        labels,
        torch.tensor([s.sample_id for s in samples]),
        torch.tensor([s.target_item for s in samples]),
    )
    batch.meta["sample"] = batch.target_mask.nonzero()[:, 0]
    batch.meta["position"] = torch.cat(positions)
    batch.meta["target_length"] = torch.cat(lengths)
    return batch
