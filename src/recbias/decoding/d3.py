"""D3 decoding: no length normalisation plus a text-free assistant (peer notes §5.2).

D3 ("Decoding Matters", Bao et al. 2024) changes two things of BIGRec's beam search:

1. **No length normalisation**: the final score is the plain sum of token log-probs, i.e.
   ``BeamConfig(length_penalty=0.0)`` (:func:`d3_beam`).
2. **Text-free assistant**: a traditional recommender's item distribution p_TF(i | user) guides
   each step. For an edge ``parent -> child`` allowed by the trie, with I(n) the items below
   node n,

       cf(child) = log( Σ_{i∈I(child)} p_TF(i) / Σ_{c'∈children(parent)} Σ_{i∈I(c')} p_TF(i) )
       score     = gs · log p_LLM(token) + (1 - gs) · cf(child)

   (D3 ``CFEnhancedLogitsProcessor``: ``gs·(logp - cf) + cf``). Summed over an item's path, the
   cf terms telescope to log p_TF(item | candidate set), so ``gs = 0`` ranks the candidates
   exactly by the assistant.

Deliberate difference: D3's script skips the assistant when ``guidance_scale == 1`` (and its
``evaluate2.sh`` never sets it, so the published D3 runs without the assistant); here the formula
is always applied, and ``gs = 1`` means LLM only because the assistant's weight is 0. The defaults
(``guidance = 1``, ``assistant = "none"``) are that published script's reading; the paper tunes the
weight, whose value we could not verify.

Efficiency: with the items laid out in the trie's depth-first order, the items below any node are
one contiguous range ``[lo, hi)``. One float64 prefix sum of p_TF per prompt (``[P, I + 1]``,
e.g. 1000 prompts x 8000 items = 64 MB) then gives the mass of any node in two lookups, so each
step costs O(rows x D) whatever the catalog size. float64 resolves masses down to ~1e-16 of a
prompt's total; smaller ones count as 0 (the edge gets -inf when gs < 1).

    hook = d3_score_hook(trie, item_distribution(sasrec.scores(test)), D3Config(guidance=0.8,
                         assistant="sasrec"))
    LLMRecommender(model, builder, titles, trie, d3_beam(beam_cfg), score_hook=hook)
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Literal

import numpy as np
import torch
from torch import Tensor

from recbias.config import Config, invalid
from recbias.decoding.config import BeamConfig, EdgeScores, ScoreHook
from recbias.decoding.trie import ItemTrie
from recbias.errors import RecbiasError


@dataclass
class D3Config(Config):
    """D3's text-free assistant (module docstring); defaults = the published script's (none)."""

    guidance: float = field(
        default=1.0,
        metadata={
            "help": "gs: score = gs·log p_LLM + (1-gs)·log p_assistant; 1 = LLM only",
            "ge": 0,
            "le": 1,
        },
    )
    assistant: Literal["none", "sasrec", "popularity"] = field(
        default="none", metadata={"help": "the traditional model giving p_assistant(item | user)"}
    )

    def check(self) -> None:
        if self.assistant == "none" and self.guidance != 1.0:
            raise invalid(
                "guidance", "weights an assistant, but assistant is 'none'", self.guidance
            )


def d3_beam(cfg: BeamConfig) -> BeamConfig:
    """``cfg`` without length normalisation (D3's ``length_penalty = 0``)."""
    return replace(cfg, length_penalty=0.0)


def item_distribution(scores: np.ndarray | Tensor) -> Tensor:
    """Softmax over items of a scorer's scores: ``[n_prompts, n_items]`` float64."""
    return torch.softmax(torch.as_tensor(np.asarray(scores), dtype=torch.float64), dim=-1)


def popularity_distribution(counts: np.ndarray, smoothing: float = 1.0) -> Tensor:
    """``[1, n_items]`` (count + smoothing) / total: the same for every prompt.

    Add-one smoothing by default, so that items never seen in training stay reachable.
    """
    mass = torch.as_tensor(np.asarray(counts), dtype=torch.float64) + smoothing
    return (mass / mass.sum())[None, :]


def subtree_ranges(trie: ItemTrie) -> tuple[Tensor, Tensor, Tensor]:
    """Depth-first item order and each node's item range in it.

    -> ``order [I]`` (indices into ``trie.item_ids``), ``lo, hi [N]``: the items below node n
    are ``order[lo[n]:hi[n]]``. Children are sorted by token, so sorting the token sequences
    lexicographically visits the leaves depth-first.
    """
    seqs = trie.item_sequences()
    order = sorted(range(len(seqs)), key=seqs.__getitem__)
    order_t = torch.tensor(order, dtype=torch.long, device=trie.device)
    rank = torch.arange(len(order), device=trie.device)
    node = trie.item_node[order_t]
    lo = torch.full((trie.n_nodes,), len(order), dtype=torch.long, device=trie.device)
    hi = torch.zeros(trie.n_nodes, dtype=torch.long, device=trie.device)
    while bool((node >= 0).any()):  # one level up per pass, every item at once
        live = node >= 0
        lo.scatter_reduce_(0, node[live], rank[live], reduce="amin")
        hi.scatter_reduce_(0, node[live], rank[live] + 1, reduce="amax")
        node = torch.where(live, trie.parent[node.clamp(min=0)], -1)
    return order_t, lo, hi


def _check_probs(trie: ItemTrie, probs: Tensor) -> None:
    if probs.ndim != 2:
        raise RecbiasError(f"d3: item_probs must be [n_prompts, n_items], got {tuple(probs.shape)}")
    if int(trie.item_ids.max()) >= probs.shape[1]:
        raise RecbiasError(
            f"d3: item_probs has {probs.shape[1]} items; the trie holds item "
            f"{int(trie.item_ids.max())}"
        )
    if not bool(torch.isfinite(probs).all()) or bool((probs < 0).any()):
        raise RecbiasError("d3: item_probs must be finite and non-negative")


def d3_score_hook(trie: ItemTrie, item_probs: Tensor, cfg: D3Config) -> ScoreHook:
    """A :data:`ScoreHook` mixing the LLM with the assistant's item distribution.

    ``item_probs``: ``[n_prompts, n_items]`` p_TF per prompt (rows in the order of the prompts
    given to the beam search, columns = item ids), or ``[1, n_items]`` for every prompt.
    Rows need not be normalised: only ratios of masses of sibling subtrees matter.
    """
    cfg.validate()
    gs = float(cfg.guidance)
    if gs == 1.0:
        return lambda view: view.logp  # the assistant's weight is 0
    probs = torch.as_tensor(item_probs, dtype=torch.float64)
    _check_probs(trie, probs)
    order, lo, hi = subtree_ranges(trie)
    mass = probs.to(trie.device)[:, trie.item_ids[order]]
    cum = torch.nn.functional.pad(mass.cumsum(dim=1), (1, 0))  # [P, I + 1] prefix sums
    if bool((cum[:, -1] <= 0).any()):
        raise RecbiasError("d3: a prompt's assistant gives zero mass to every candidate item")
    shared = probs.shape[0] == 1

    def hook(view: EdgeScores) -> Tensor:
        device = view.logp.device
        row = torch.zeros_like(view.prompt) if shared else view.prompt
        row, child = row.to(trie.device)[:, None], view.child.to(trie.device).clamp(min=0)
        below = cum[row, hi[child]] - cum[row, lo[child]]  # [rows, D] mass of each child
        below = torch.where(view.valid.to(trie.device), below, 0.0).to(device)
        total = below.sum(dim=1, keepdim=True)
        cf = torch.log(below / total.clamp_min(torch.finfo(torch.float64).tiny)).float()
        llm = gs * view.logp if gs > 0 else 0.0  # gs = 0: ignore the LLM, even -inf
        score = llm + (1.0 - gs) * cf
        return score.masked_fill(~view.valid, float("-inf"))

    return hook
