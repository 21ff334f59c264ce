"""Per-sample tables that objectives compute once in ``setup`` and look up per batch."""

from __future__ import annotations

import torch

from recbias.errors import RecbiasError
from recbias.lm.batching import Batch


class SampleTable:
    """A per-(sample, target position) table computed once in ``setup``, looked up per batch.

    ``values: [n_samples, L]`` aligned with ``sample_ids: [n_samples]``; :meth:`lookup` returns the
    ``[n_tok]`` values of a collated batch's supervised tokens without a Python loop over tokens.
    """

    def __init__(self, sample_ids: torch.Tensor, values: torch.Tensor) -> None:
        order = torch.argsort(sample_ids)
        self.ids, self.values = sample_ids[order], values[order]
        if self.ids.numel() > 1 and bool((self.ids[1:] == self.ids[:-1]).any()):
            raise RecbiasError("training sample ids are not unique")

    def rows(self, sample_ids: torch.Tensor) -> torch.Tensor:
        """Row of each sample id; an id not seen at setup is an error."""
        ids = sample_ids.cpu()
        rows = torch.searchsorted(self.ids, ids).clamp(max=max(self.ids.numel() - 1, 0))
        missing = self.ids[rows] != ids
        if bool(missing.any()):
            raise RecbiasError(
                f"sample {int(ids[missing][0])} was not among the training samples at setup"
            )
        return rows

    def lookup(self, batch: Batch) -> torch.Tensor:
        """``[n_tok]`` values at ``(meta['sample'], meta['position'])``, on the meta's device."""
        sample, position = batch.meta["sample"], batch.meta["position"]
        sub = self.values[self.rows(batch.sample_ids)].to(sample.device)  # [batch, L]
        return sub[sample, position]
