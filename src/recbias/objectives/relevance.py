"""Token relevance to the auxiliary tokens (GDRT Eq. 3) and the relevance groups built from it.

GDRT §3 ("Token Grouping by Relevance with Auxiliary Tokens") scores every target token by how
predictable it is from the prompt *without* the user's history:

    r(y*_{i,t}) = log P_θ(y*_{i,t} | x^task, y*_{i,<t})                               (Eq. 3)

where ``x^task`` is the training prompt with the history replaced by a placeholder ("N/A", §2.2.2),
and then splits all target tokens of the training set into G groups by K-means on r (footnote 2
allows equal-frequency bins instead).

The masked prompt does not depend on the sample: every sample with the same target item has the
same masked prompt and the same target tokens, hence the same r. So r is computed once per
*distinct target item* (not per sample) and broadcast, and the masked prompt itself is run once
and its KV cache shared by all items (:func:`recbias.decoding.item_token_logprobs`). Items are
scored in length-sorted chunks (little padding), without gradients, under the run's autocast.

    rel = token_relevance(model, builder, samples, dtype="fp32")
    groups = relevance_groups(rel, n_groups=5, method="kmeans", seed=0)  # 0 = most relevant
    table = group_table(rel, groups, n_items)                            # [n_items, T] ids
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Literal

import numpy as np
import torch

from recbias.decoding import item_token_logprobs
from recbias.decoding.kv import model_device
from recbias.errors import RecbiasError
from recbias.lm.batching import TokenizedSample
from recbias.lm.loading import autocast
from recbias.prompts import PromptBuilder

GroupMethod = Literal["kmeans", "quantile"]


@dataclass(frozen=True)
class TokenRelevance:
    """Eq. 3 relevance of every target token, one row per distinct training target item.

    items: [m] item ids; values: [m, T] r per target position (NaN after each target's end);
    counts: [m] training samples whose target is the item (each token's multiplicity in the set).
    """

    items: np.ndarray
    values: np.ndarray
    counts: np.ndarray

    @property
    def real(self) -> np.ndarray:
        """[m, T] True on real target positions."""
        return ~np.isnan(self.values)


def masked_prompt(builder: PromptBuilder, placeholder: str | None = None) -> list[int]:
    """Token ids of the prompt whose history is the placeholder (the builder's unless overridden).

    An empty history makes :meth:`PromptBuilder.segments` insert ``cfg.history_placeholder``;
    the target tokens are tokenized on their own, so they are the training targets' ids.
    """
    if placeholder is not None and placeholder != builder.cfg.history_placeholder:
        builder = copy.copy(builder)
        builder.cfg = replace(builder.cfg, history_placeholder=placeholder)
    return builder.encode([], None, None).input_ids


def target_sequences(
    samples: Sequence[TokenizedSample],
) -> tuple[list[int], list[list[int]], list[int]]:
    """Distinct target items (first-seen order), their target ids and how many samples have them.

    A target item tokenized two different ways would break the per-item broadcast: an error.
    """
    seqs: dict[int, list[int]] = {}
    counts: dict[int, int] = {}
    for s in samples:
        ids = list(s.prompt.target_ids)
        known = seqs.setdefault(s.target_item, ids)
        if known != ids:
            raise RecbiasError(
                f"sample {s.sample_id}: target item {s.target_item} has target tokens {ids}, "
                f"another sample has {known}; relevance is computed once per item"
            )
        counts[s.target_item] = counts.get(s.target_item, 0) + 1
    items = list(seqs)
    return items, [seqs[i] for i in items], [counts[i] for i in items]


def token_relevance(
    model: torch.nn.Module,
    builder: PromptBuilder,
    samples: Sequence[TokenizedSample],
    dtype: str,
    batch_size: int = 32,
    placeholder: str | None = None,
) -> TokenRelevance:
    """Eq. 3 for every target token of ``samples``, computed once per distinct target item."""
    if not samples:
        raise RecbiasError("relevance: no training samples")
    items, seqs, counts = target_sequences(samples)
    order = sorted(range(len(seqs)), key=lambda i: (len(seqs[i]), i))  # length buckets
    prompt = masked_prompt(builder, placeholder)
    with autocast(dtype, model_device(model)):
        logp = item_token_logprobs(model, prompt, [seqs[i] for i in order], batch_size)
    values = np.full((len(seqs), max(len(s) for s in seqs)), np.nan)
    for row, i in enumerate(order):
        values[i, : len(seqs[i])] = logp[row, : len(seqs[i])].double().numpy()
    return TokenRelevance(np.asarray(items, np.int64), values, np.asarray(counts, np.int64))


def relevance_groups(
    rel: TokenRelevance,
    n_groups: int,
    method: GroupMethod = "kmeans",
    seed: int = 0,
    n_init: int = 10,
) -> np.ndarray:
    """Group id of every target token: [m, T] int64, -1 on padding; 0 = highest mean relevance.

    Tokens are weighted by how many training samples contain them, so the grouping is the one of
    all target tokens of the training set. Equal r values always share a group.
    """
    values, inverse, weights = _distinct_values(rel)
    if n_groups > len(values):
        raise RecbiasError(
            f"config key 'train.objective.gdrt.groups': {n_groups} groups but the training "
            f"targets have only {len(values)} distinct relevance values"
        )
    if method == "kmeans":
        labels = kmeans_groups(values, weights, n_groups, seed, n_init)
    elif method == "quantile":
        labels = quantile_groups(values, weights, n_groups)
    else:
        raise RecbiasError(f"config key 'train.objective.gdrt.grouping': unknown method {method!r}")
    out = np.full(rel.values.shape, -1, dtype=np.int64)
    out[rel.real] = labels[inverse]
    return out


def _distinct_values(rel: TokenRelevance) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Distinct r values, each real token's index into them, and each value's token count."""
    real = rel.real
    weight = np.broadcast_to(rel.counts[:, None], real.shape)[real].astype(np.float64)
    values, inverse = np.unique(rel.values[real], return_inverse=True)
    return values, inverse, np.bincount(inverse, weights=weight, minlength=len(values))


def kmeans_groups(
    values: np.ndarray, weights: np.ndarray, n_groups: int, seed: int, n_init: int = 10
) -> np.ndarray:
    """Weighted 1-D K-means (scikit-learn) of ``values`` [n]; labels [n] by decreasing centre."""
    from sklearn.cluster import KMeans  # scikit-learn is slow to import; only GDRT needs it

    km = KMeans(n_clusters=n_groups, n_init=n_init, random_state=seed)
    labels = km.fit_predict(values[:, None], sample_weight=weights)
    return _rank_by_centre(labels, km.cluster_centers_[:, 0])


def quantile_groups(values: np.ndarray, weights: np.ndarray, n_groups: int) -> np.ndarray:
    """Equal-frequency bins of ``values`` [n] (weighted), from the highest value down.

    A value goes to the bin where its block of equal tokens starts, so ties stay together; bins
    left empty by heavy ties are dropped (fewer groups, renumbered without gaps).
    """
    order = np.argsort(-values, kind="stable")
    before = np.cumsum(weights[order]) - weights[order]
    bins = np.minimum((before * n_groups / weights.sum()).astype(np.int64), n_groups - 1)
    labels = np.empty(len(values), dtype=np.int64)
    labels[order] = np.unique(bins, return_inverse=True)[1]
    return labels


def _rank_by_centre(labels: np.ndarray, centres: np.ndarray) -> np.ndarray:
    """Relabel clusters so that 0 has the highest centre (relevance) and ids have no gaps."""
    used = np.unique(labels)
    rank = np.empty(centres.shape[0], dtype=np.int64)
    rank[used[np.argsort(-centres[used], kind="stable")]] = np.arange(len(used))
    return rank[labels]


def group_table(rel: TokenRelevance, groups: np.ndarray, n_items: int) -> torch.Tensor:
    """[n_items, T] group id of (target item, position); -1 for items that are no target."""
    table = torch.full((n_items, groups.shape[1]), -1, dtype=torch.long)
    table[torch.as_tensor(rel.items)] = torch.as_tensor(groups)
    return table
