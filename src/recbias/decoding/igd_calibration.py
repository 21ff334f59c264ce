"""IGD's calibration of beam-search scores by information gain (IGD §4.3.2, Eq. 9-10).

    S(y_≤t) = S(y_<t) + w_d · log p(y_t | x, y_<t),     w_d = 1 − α · IG~(y_t)

``IG~`` is the IG of each trie edge out of a beam's node, min-max scaled among that node's valid
children: ``IG~ = (IG − min) / (max − min + ε)`` with IGD's ε = 1e-7 (``LogitProcesser.py:
TrieLogitsProcessor``), so a single child or equal siblings get IG~ = 0 and w_d = 1. Because the
log-prob is negative, ``w_d < 1`` shrinks it toward 0: high-IG tokens are *boosted* relative to
their low-IG siblings (peer notes §5.3). α = 0 leaves the supported edges' scores unchanged. IGD also subtracts
1e-7 from every log-prob first; that only matters for log-probs of exactly 0, which ``w_d`` leaves
at 0 either way, so it is omitted.

IG is computed on the *decoding* trie with ``p_r`` = training-target popularity. IGD decodes over
its reference trie, the training targets only (``decode.candidates = "train_targets"``). Over a
larger set (the catalog) an edge into a subtree without training support (no item below it was
ever a training target) has ``S(child) = 0``, so ``IG = S(parent)``: the largest IG among its
siblings and so the largest boost, a reward for *missing* support that measures nothing about the
target. ``unsupported`` says what such edges get instead:

- ``"exclude"`` (default): score −inf, i.e. IGD's candidate set whatever the trie holds. The
  beam's log-probs are full-vocabulary log-softmax values (``decode.beam.renormalize = false``),
  which other trie children do not change, so the scores of the supported edges and the ranking
  equal decoding over the training-target trie.
- ``"no_boost"``: kept as candidates with ``w_d = 1`` (the weight of the least informative
  supported sibling) and left out of the min-max scaling. Supported edges keep exactly the
  weights they have in the training-target trie; as log-probs are negative, ``w_d = 1`` is the
  largest penalty, so the calibration can only move such an edge down relative to its siblings.

On a trie with no unsupported edge both options are the paper's calibration. The hook must be
used with the same trie it was built from.

    hook = igd_score_hook(trie, item_counts, IGDDecodeConfig(alpha=0.2))
    constrained_beam_search(model, prompts, trie, BeamConfig(length_penalty=0.0), pad, hook)
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import torch

from recbias.config import Config, spec
from recbias.decoding.config import EdgeScores, ScoreHook
from recbias.decoding.information_gain import trie_information
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
    unsupported: Literal["exclude", "no_boost"] = field(
        default="exclude",
        metadata={
            "help": "edges into subtrees with no training target (decode.candidates = 'catalog'): "
            "exclude = never decoded (IGD's candidate set, the training targets); no_boost = "
            "decoded with w_d = 1, never boosted for their missing support"
        },
    )


def calibration_weights(
    gain: torch.Tensor, valid: torch.Tensor, alpha: float, eps: float = 1e-7
) -> torch.Tensor:
    """``w_d = 1 − α·IG~`` per edge, ``[rows, D]``, from the edges' ``gain`` and ``valid`` masks.

    The min-max scaling runs over the ``valid`` edges of a row; the others get weight 1.
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
    cfg = cfg or IGDDecodeConfig()
    cfg.validate()
    info = trie_information(trie, item_counts)
    tables = {"gain": info.gain.float(), "supported": info.support > 0}  # [N] per node
    on_device: dict[torch.device, dict[str, torch.Tensor]] = {}

    def hook(edges: EdgeScores) -> torch.Tensor:
        device = edges.logp.device
        if device not in on_device:
            on_device[device] = {k: v.to(device) for k, v in tables.items()}
        child = edges.child.clamp_min(0)
        supported = edges.valid & on_device[device]["supported"][child]
        out = edges.logp
        if cfg.alpha != 0:
            edge_gain = on_device[device]["gain"][child]
            weights = calibration_weights(edge_gain, supported, cfg.alpha, cfg.eps)
            out = torch.where(supported, weights * out, out)
        if cfg.unsupported == "exclude":
            out = out.masked_fill(edges.valid & ~supported, float("-inf"))
        return out

    return hook
