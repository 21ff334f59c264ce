"""Information gain (IG) of item-title tokens over a reference item trie (IGD, §4.1 Eq. 5-6).

IGD treats generation as a decision process over a reference item set with distribution ``p_r``
(training-target popularity, normalised over all training targets). Every trie node holds

    S(node)  = Σ_{items i under node} −p_i log p_i          (Eq. 5, *global* normalisation)
    IG(node) = S(parent) − S(node)                          (Eq. 6, the IG of the edge into node)

exactly as IGD's ``code/trie.py`` (``S`` is not renormalised to a conditional entropy; the root holds
the whole sum). A token is *zero-IG* when its child keeps every item of the parent that has
``p_i > 0`` (the token is forced given the prefix). The test is exact and count-based —
``support(child) == support(parent)`` — never a float comparison.

    info = trie_information(trie, item_counts)
    nodes, lengths = walk_samples(trie, samples, titles)     # [n, L] node after each target token
    zero = zero_gain_tokens(info, nodes)                     # [n, L] bool
    zero_ig_share(zero, lengths)                             # IGD reports about 70%

Unlike IGD, a target that leaves the trie is an error naming the sample and the title (IGD
silently gives the whole sequence IG = 0).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from recbias.decoding.trie import ItemTrie
from recbias.errors import RecbiasError
from recbias.lm.batching import TokenizedSample
from recbias.prompts import PromptBuilder


@dataclass(frozen=True)
class TrieInformation:
    """Per-node information of an :class:`ItemTrie` (``N`` nodes)."""

    entropy: torch.Tensor  # [N] float64 S(node)
    support: torch.Tensor  # [N] long: items with p_r > 0 at or below the node
    gain: torch.Tensor  # [N] float64 IG of the edge into the node (0 at the root)
    zero_gain: torch.Tensor  # [N] bool: support equals the parent's (False at the root)


def reference_probabilities(trie: ItemTrie, item_counts: np.ndarray) -> torch.Tensor:
    """``p_r`` of the trie's items, ``[I]`` float64: count / total training targets.

    The total runs over every training target (IGD asserts its constant equals it), so items of
    the trie that are never a training target get ``p = 0`` and contribute nothing.
    """
    counts = torch.as_tensor(np.asarray(item_counts), dtype=torch.float64)
    total = float(counts.sum())
    if total <= 0:
        raise RecbiasError("item_counts are all zero: no training targets to build p_r from")
    ids = trie.item_ids.cpu()
    if int(ids.max()) >= counts.numel():
        raise RecbiasError(f"trie item {int(ids.max())} has no count (only {counts.numel()} items)")
    return counts[ids] / total


def _sum_up(trie: ItemTrie, values: torch.Tensor) -> torch.Tensor:
    """Subtree sums: ``values`` placed on nodes are added into every ancestor, deepest first."""
    parent, depth = trie.parent.cpu(), trie.depth.cpu()
    out = values.clone()
    for d in range(int(depth.max()), 0, -1):
        at = (depth == d).nonzero().squeeze(1)
        out.scatter_add_(0, parent[at], out[at])
    return out


def trie_information(trie: ItemTrie, item_counts: np.ndarray) -> TrieInformation:
    """S, support, IG and the zero-IG flag of every node (on the CPU)."""
    p = reference_probabilities(trie, item_counts)
    terms = torch.where(p > 0, -p * torch.log(p.clamp_min(1e-300)), torch.zeros_like(p))
    item_node = trie.item_node.cpu()
    leaf_terms = torch.zeros(trie.n_nodes, dtype=torch.float64).index_add_(0, item_node, terms)
    leaf_support = torch.zeros(trie.n_nodes, dtype=torch.long).index_add_(
        0, item_node, (p > 0).long()
    )
    entropy, support = _sum_up(trie, leaf_terms), _sum_up(trie, leaf_support)
    parent = trie.parent.cpu().clamp_min(0)
    root = trie.parent.cpu() < 0
    gain = torch.where(root, 0.0, entropy[parent] - entropy)
    zero = (support == support[parent]) & ~root
    return TrieInformation(entropy, support, gain, zero)


def walk_samples(
    trie: ItemTrie, samples: Sequence[TokenizedSample], titles: Sequence[str], what: str = "trie"
) -> tuple[torch.Tensor, torch.Tensor]:
    """Node reached after each target token: ``nodes [n, L]`` (-1 as padding), ``lengths [n]``.

    Raises :class:`RecbiasError` naming the sample id and title if a target leaves the trie.
    """
    trie = trie.to("cpu")
    lengths = torch.tensor([len(s.prompt.target_ids) for s in samples], dtype=torch.long)
    width = int(lengths.max()) if len(samples) else 0
    tokens = torch.full((len(samples), width), -1, dtype=torch.long)
    for row, s in enumerate(samples):
        tokens[row, : len(s.prompt.target_ids)] = torch.tensor(s.prompt.target_ids)
    nodes = torch.full_like(tokens, -1)
    node = torch.zeros(len(samples), dtype=torch.long)
    for t in range(width):
        node = trie.next_nodes(node, tokens[:, t])
        nodes[:, t] = node
    live = torch.arange(width)[None, :] < lengths[:, None]
    broken = (live & (nodes < 0)).any(dim=1).nonzero().squeeze(1)
    if broken.numel():
        s = samples[int(broken[0])]
        raise RecbiasError(
            f"sample {s.sample_id}: the target item {s.target_item} ({titles[s.target_item]!r}) "
            f"does not walk the {what} ({broken.numel()} samples affected); the trie must be built "
            "with the same tokenization as the targets and hold every training target"
        )
    return nodes, lengths


def parent_nodes(nodes: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """Node *before* each target token (root = 0 first): ``[n, L]``, -1 as padding."""
    before = torch.cat([torch.zeros_like(nodes[:, :1]), nodes[:, :-1]], dim=1)
    live = torch.arange(nodes.shape[1])[None, :] < lengths[:, None]
    return torch.where(live, before, -1)


def token_gain(info: TrieInformation, nodes: torch.Tensor) -> torch.Tensor:
    """IG of every target token, ``[n, L]`` float64 (0 on padding)."""
    return torch.where(nodes >= 0, info.gain[nodes.clamp_min(0)], 0.0)


def zero_gain_tokens(info: TrieInformation, nodes: torch.Tensor) -> torch.Tensor:
    """Zero-IG flag of every target token, ``[n, L]`` bool (False on padding)."""
    return (nodes >= 0) & info.zero_gain[nodes.clamp_min(0)]


def zero_ig_share(zero: torch.Tensor, lengths: torch.Tensor) -> float:
    """Share of the training-target tokens that are zero-IG (IGD §4.2.1: about 70%)."""
    return float(zero.sum()) / max(int(lengths.sum()), 1)


def target_trie(builder: PromptBuilder, titles: Sequence[str], item_counts: np.ndarray) -> ItemTrie:
    """IGD's reference trie: the training-target items (count > 0), tokenized as targets."""
    items = np.flatnonzero(np.asarray(item_counts) > 0).tolist()
    if not items:
        raise RecbiasError("item_counts are all zero: no training targets for the reference trie")
    return ItemTrie.build([builder.encode_target(titles[i]) for i in items], items)
