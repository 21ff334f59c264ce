"""IGD's calibration of beam-search scores by information gain (IGD §4.3.2, Eq. 9-10).

    S(y_≤t) = S(y_<t) + w_d · log p(y_t | x, y_<t),     w_d = 1 − α · IG~(y_t)

``IG~`` is the IG of each trie edge out of a beam's node, min-max scaled among that node's valid
children: ``IG~ = (IG − min) / (max − min + ε)`` with IGD's ε = 1e-7 (``LogitProcesser.py:
TrieLogitsProcessor``), so a single child or equal siblings get IG~ = 0 and w_d = 1. Because the
log-prob is negative, ``w_d < 1`` shrinks it toward 0: high-IG tokens are *boosted* relative to
their low-IG siblings (peer notes §5.3). α = 0 leaves the scores unchanged. IGD also subtracts
1e-7 from every log-prob first; that only matters for log-probs of exactly 0, which ``w_d`` leaves
at 0 either way, so it is omitted.

IG is computed on the *decoding* trie with ``p_r`` = training-target popularity (IGD's constraint
trie is its reference trie); candidates that never were a training target have ``p = 0`` and add
nothing to ``S``. The hook must be used with the same trie it was built from.

    hook = igd_score_hook(trie, item_counts, IGDDecodeConfig(alpha=0.2))
    constrained_beam_search(model, prompts, trie, BeamConfig(length_penalty=0.0), pad, hook)
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from recbias.config import Config, spec
from recbias.decoding.config import EdgeScores, ScoreHook
from recbias.decoding.trie import ItemTrie


@dataclass
class IGDDecodeConfig(Config):
    """Default α = 0.2 (IGD README: "generally best"; its ``evaluate.sh`` uses 0.1)."""

    alpha: float = field(
        default=0.2,
        metadata=spec("IG calibration strength (IGD Eq. 10); 0 = plain beam search", ge=0, le=1),
    )
    eps: float = field(
        default=1e-7, metadata=spec("added to max − min in IGD's min-max scaling of IG", ge=0)
    )


def calibration_weights(
    gain: torch.Tensor, valid: torch.Tensor, alpha: float, eps: float = 1e-7
) -> torch.Tensor:
    """``w_d = 1 − α·IG~`` per edge, ``[rows, D]``, from the edges' ``gain`` and ``valid`` masks.

    Padding edges get weight 1.
    """
    lo = gain.masked_fill(~valid, torch.inf).amin(dim=1, keepdim=True)
    hi = gain.masked_fill(~valid, -torch.inf).amax(dim=1, keepdim=True)
    span = hi - lo
    scaled = torch.where(valid & (span > 0), (gain - lo) / (span + eps), 0.0)
    return 1.0 - alpha * scaled


def igd_score_hook(
    trie: ItemTrie, item_counts: np.ndarray, cfg: IGDDecodeConfig | None = None
) -> ScoreHook:
    """A score hook that multiplies each edge's log-prob by ``w_d`` (see the module docstring)."""
    # Imported here: the objectives package imports the decoding package.
    from recbias.objectives.information_gain import trie_information

    cfg = cfg or IGDDecodeConfig()
    cfg.validate()
    gain = trie_information(trie, item_counts).gain.float()  # [N] IG of the edge into each node
    on_device: dict[torch.device, torch.Tensor] = {}

    def hook(edges: EdgeScores) -> torch.Tensor:
        if cfg.alpha == 0:
            return edges.logp
        device = edges.logp.device
        if device not in on_device:
            on_device[device] = gain.to(device)
        edge_gain = on_device[device][edges.child.clamp_min(0)]
        weights = calibration_weights(edge_gain, edges.valid, cfg.alpha, cfg.eps)
        return torch.where(edges.valid, weights * edges.logp, edges.logp)

    return hook
