"""Tokenized training samples, length-bucketed batches and collation.

A training batch is right-padded; labels are ``-100`` everywhere except on target tokens, so the
supervised positions are exactly the target span recorded by :mod:`recbias.prompts`.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

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

    ``precomputed`` holds facts computed on the host before the tensors move to an accelerator
    (:func:`precompute_targets`), so that a training step never waits on the device for a
    data-dependent shape (boolean-mask indexing, ``int()`` of a device tensor).

    ``right_padded``: every row's real tokens come first (what :func:`collate` builds). A causal
    model then needs no attention mask for the real positions (they never see the padding after
    them), so the forward can leave it out (:func:`recbias.lm.forward.target_logits`).
    """

    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    labels: torch.Tensor
    sample_ids: torch.Tensor
    target_items: torch.Tensor
    meta: dict[str, torch.Tensor] = field(default_factory=dict)
    precomputed: dict[str, Any] = field(default_factory=dict)
    right_padded: bool = False

    @property
    def target_labels(self) -> torch.Tensor:
        """[n_tok] the supervised next-token ids, in row-major order."""
        if "target_labels" in self.precomputed:
            return self.precomputed["target_labels"]
        shifted = self.labels[:, 1:]
        return shifted[shifted != IGNORE]

    @property
    def target_mask(self) -> torch.Tensor:
        """[batch, seq-1] True where the hidden state at t predicts a supervised token t+1."""
        return self.labels[:, 1:] != IGNORE

    @property
    def n_tokens(self) -> int:
        if "n_tokens" in self.precomputed:
            return self.precomputed["n_tokens"]
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


def split_micro_batches(
    indices: Sequence[int], lengths: Sequence[int], max_samples: int, max_tokens: int = 0
) -> list[list[int]]:
    """Consecutive micro-batches of ``indices`` (in their order), each of at most ``max_samples``
    samples and, when ``max_tokens`` > 0, at most ``max_tokens`` padded tokens (rows × the
    longest row's length). A sample longer than ``max_tokens`` forms a micro-batch of its own.
    """
    out: list[list[int]] = []
    current: list[int] = []
    widest = 0
    for i in indices:
        width = max(widest, lengths[i])
        full = len(current) >= max_samples or (
            max_tokens > 0 and width * (len(current) + 1) > max_tokens
        )
        if current and full:
            out.append(current)
            current, width = [], lengths[i]
        current.append(i)
        widest = width
    if current:
        out.append(current)
    return out


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
        right_padded=True,
    )
    batch.meta["sample"] = batch.target_mask.nonzero()[:, 0]
    batch.meta["position"] = torch.cat(positions)
    batch.meta["target_length"] = torch.cat(lengths)
    return batch


def precompute_targets(batch: Batch, prefix: int) -> None:
    """Record on the host (CPU tensors) what a training step needs without device syncs.

    ``prefix``: leading tokens the forward computes once for all rows (0 = none). Stores the
    ``[n_tok]`` target labels and the ``rows, cols`` of every supervised position in the
    ``[batch, seq-1-prefix]`` grid of hidden states after the prefix, in row-major order (what
    ``target_mask[:, prefix:]`` selects), and the number of real tokens.
    """
    rows, cols = batch.target_mask[:, prefix:].nonzero(as_tuple=True)
    batch.precomputed.update(
        prefix=prefix,
        target_labels=batch.target_labels,
        target_rows=rows.contiguous(),
        target_cols=cols.contiguous(),
        n_tokens=int(batch.attention_mask.sum()),
    )


def to_device(batch: Batch, device: torch.device) -> None:
    """Move the batch's tensors, ``meta`` and those in ``precomputed`` to ``device``, in place.

    On CUDA the copies do not block the host (``non_blocking``), so the step's work queues up
    behind the running kernels. They are made from ordinary (pageable) memory on purpose: the
    driver stages a batch this small (well under 1 MB) in its own pinned buffer, while
    ``pin_memory()`` would page-lock fresh memory for every tensor of every micro-batch, which
    costs more than the faster transfer saves. ``sample_ids`` and ``target_items`` stay on the host
    (objectives index host tables with them).
    """
    blocking = device.type != "cuda"

    def move(t: torch.Tensor) -> torch.Tensor:
        return t.to(device, non_blocking=not blocking)

    batch.input_ids, batch.attention_mask = move(batch.input_ids), move(batch.attention_mask)
    batch.labels = move(batch.labels)
    batch.meta.update({k: move(v) for k, v in batch.meta.items()})
    tensors = {k: v for k, v in batch.precomputed.items() if isinstance(v, torch.Tensor)}
    batch.precomputed.update({k: move(v) for k, v in tensors.items()})
