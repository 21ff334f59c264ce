"""The token-level objective hook of the training loop.

An objective sees only the supervised target tokens of a micro-batch:

- ``logits``: [n_tok, vocab] next-token logits at the supervised positions (fp32),
- ``labels``: [n_tok] the target token ids,
- ``meta``: per-token tensors aligned with them (``sample``, ``position``, ``target_length``, and
  anything the objective's :meth:`Objective.prepare` added),

and returns the **sum** of its per-token terms. :meth:`Objective.normaliser` returns the matching
denominator from labels and metadata alone; the trainer divides the summed numerators of all
micro-batches of one optimiser step by the summed denominators, so gradient accumulation and
micro-batch size do not change the loss.

Objectives that need more than the batch (a trie, popularity, a second forward pass, a relevance
pass over the training set) get an :class:`ObjectiveContext` once before training through
``setup``; ``on_epoch_start`` lets them refresh state (e.g. GDRT recomputing relevance every N
epochs); ``stats`` returns tensors the trainer logs every ``log_every`` steps (e.g. per-group
losses), so no per-token ``.item()`` call is needed.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

import numpy as np
import pandas as pd
import torch

if TYPE_CHECKING:
    from recbias.decoding import ItemTrie
    from recbias.lm.batching import Batch, TokenizedSample
    from recbias.prompts import PromptBuilder


@dataclass
class ObjectiveContext:
    """Everything about the training run an objective may need besides the batch."""

    model: torch.nn.Module
    builder: PromptBuilder
    titles: Sequence[str]
    train: pd.DataFrame  # the training split (sample_id, user, history, target, timestamp)
    samples: Sequence[TokenizedSample]  # the same samples, tokenized, in the same order
    item_counts: np.ndarray  # [n_items] how often each item is a training target
    trie: ItemTrie  # item trie of the decoding candidates, built from builder.encode_target
    dtype: str  # "bf16" or "fp32" compute
    pad_id: int


class Objective(Protocol):
    name: str

    def setup(self, ctx: ObjectiveContext) -> None:
        """Called once before training (default objectives ignore it)."""

    def on_epoch_start(self, epoch: int, model: torch.nn.Module) -> None:
        """Called before every epoch, including the first (not again when a run resumes
        mid-epoch: what it set up then is restored from :meth:`state_dict`)."""

    def stats(self) -> dict[str, torch.Tensor]:
        """Tensors to log (e.g. per-group losses and weights); empty by default."""
        ...

    def state_dict(self) -> dict[str, torch.Tensor]:
        """Running state that a resumed run must restore (e.g. MSL's adaptive τ)."""
        ...

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        """Restore what :meth:`state_dict` returned (empty for a fresh run)."""

    def prepare(self, batch: Batch) -> None:
        """Add per-token metadata to ``batch.meta`` (e.g. weights, groups); called once per batch."""

    def normaliser(self, labels: torch.Tensor, meta: dict[str, torch.Tensor]) -> torch.Tensor:
        """Scalar denominator of this micro-batch (e.g. its number of target tokens)."""
        ...

    def __call__(
        self, logits: torch.Tensor, labels: torch.Tensor, meta: dict[str, torch.Tensor]
    ) -> torch.Tensor:
        """Scalar numerator: the sum of per-token loss terms."""
        ...

    # Optional: ``idle_loss(logits, batch)``, a zero loss built from the same forward passes as
    # a real micro-batch's, for a rank that only takes part in FSDP's collectives (see
    # :meth:`ObjectiveBase.idle_loss`); without it the loop uses ``logits.sum() * 0``.


class ObjectiveBase:
    """No-op defaults of the optional hooks, so an objective writes only what it uses."""

    name = "base"

    def setup(self, ctx: ObjectiveContext) -> None:
        return None

    def on_epoch_start(self, epoch: int, model: torch.nn.Module) -> None:
        return None

    def stats(self) -> dict[str, torch.Tensor]:
        return {}

    def prepare(self, batch: Batch) -> None:
        return None

    def state_dict(self) -> dict[str, torch.Tensor]:
        return {}

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        return None

    def idle_loss(self, logits: torch.Tensor, batch: Batch) -> torch.Tensor:
        """A zero loss over the forward passes a real micro-batch runs. Under FSDP a rank with
        fewer micro-batches in a step repeats one with zero weight, so that every rank runs the
        same collectives; an objective that runs extra forward passes in ``__call__`` (CFT) runs
        them here too, without touching its statistics."""
        return logits.float().sum() * 0.0
