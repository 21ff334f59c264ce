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
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

import torch

if TYPE_CHECKING:
    from recbias.lm.batching import Batch


class Objective(Protocol):
    name: str

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
