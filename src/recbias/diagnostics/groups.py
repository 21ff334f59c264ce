"""Item groupings for group-fairness metrics: GDRT relevance groups, genres, popularity quantiles.

* **relevance** (GDRT §2.2.2, Eq. 2): ``r(y) = (1/|y|) Σ_t log P(y_t | x^task, y_<t)``, the mean
  token log-probability of an item's target tokens (title, terminator and EOS, exactly what the
  model generates) given the prompt whose history is the placeholder ("N/A"). One forward of the
  masked prompt, its KV cache shared by all catalog titles (:func:`recbias.decoding.
  item_token_logprobs`). Items sorted by r are cut into G equal-size groups, G1 = most relevant.
* **genre** (SPRec): a multi-genre item splits a weight of 1 equally over its genres; items
  without a (kept) genre are ungrouped.
* **popularity**: G quantile groups of equal item counts, P1 = most popular. Items are sorted by
  their training count (the audit passes every training interaction, not the sampled training
  targets, :meth:`recbias.data.PreparedDataset.train_popularity`), descending, ties broken by item
  id (lower id first), and the sorted list is cut into G consecutive groups whose sizes differ by
  at most one (the first ``n mod G`` groups hold one more item). So there are always G non-empty
  groups (n ≥ G), and an item's group depends on its count and id only; a tie block that crosses a
  cut is split by id. Each label gives the group's count range.

Relevance groups are equal-size cuts that keep tied values together (a tie block goes to the
group where it starts), so heavy ties can leave fewer than G groups; the labels say which.

    rel = item_relevance(model, builder, titles, dtype="bf16")
    groupings = [relevance_grouping(rel), genre_grouping(genres_of(ds.items)),
                 popularity_grouping(ds.train_popularity())]
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
import torch

from recbias.decoding import item_token_logprobs
from recbias.decoding.kv import model_device
from recbias.errors import DataError, RecbiasError
from recbias.lm.loading import autocast
from recbias.metrics.fairness import ItemGrouping
from recbias.objectives.relevance import masked_prompt, quantile_groups
from recbias.prompts import PromptBuilder


def item_relevance(
    model: torch.nn.Module,
    builder: PromptBuilder,
    titles: Sequence[str],
    items: Sequence[int] | None = None,
    dtype: str = "fp32",
    batch_size: int = 64,
    placeholder: str | None = None,
) -> np.ndarray:
    """GDRT Eq. 2 for ``items`` (default: the whole catalog): ``[len(titles)]`` float64, NaN
    for items not scored. Titles are scored in length-sorted chunks (little padding)."""
    items = list(range(len(titles))) if items is None else [int(i) for i in items]
    if not items:
        raise RecbiasError("relevance: no items to score")
    seqs = [builder.encode_target(titles[i]) for i in items]
    order = sorted(range(len(seqs)), key=lambda j: (len(seqs[j]), j))
    prompt = masked_prompt(builder, placeholder)
    with autocast(dtype, model_device(model)):
        logp = item_token_logprobs(model, prompt, [seqs[j] for j in order], batch_size)
    out = np.full(len(titles), np.nan)
    for row, j in enumerate(order):
        out[items[j]] = float(logp[row, : len(seqs[j])].double().mean())
    return out


def equal_groups(scores: np.ndarray, n_groups: int) -> np.ndarray:
    """``[n]`` group of each score: G equal-size groups from the highest score down; NaN -> −1.

    Ties stay in one group (:func:`recbias.objectives.relevance.quantile_groups`).
    """
    scores = np.asarray(scores, dtype=np.float64)
    if n_groups < 1:
        raise RecbiasError(f"n_groups must be >= 1, got {n_groups}")
    ok = ~np.isnan(scores)
    values, inverse, weights = np.unique(scores[ok], return_inverse=True, return_counts=True)
    if len(values) == 0:
        raise RecbiasError("cannot group items: every score is NaN")
    out = np.full(scores.size, -1, dtype=np.int64)
    out[ok] = quantile_groups(values, weights.astype(np.float64), n_groups)[inverse]
    return out


def _ranked_grouping(name: str, scores: np.ndarray, n_groups: int, top: str) -> ItemGrouping:
    group_of = equal_groups(scores, n_groups)
    n = int(group_of.max()) + 1
    labels = [f"{name[0].upper()}{g + 1}" + (f" ({top})" if g == 0 else "") for g in range(n)]
    return ItemGrouping.from_labels(name, group_of, labels)


def relevance_grouping(relevance: np.ndarray, n_groups: int = 5) -> ItemGrouping:
    """GDRT item groups from :func:`item_relevance` ``[n_items]``; G1 = highest relevance."""
    return _ranked_grouping("relevance", relevance, n_groups, "most relevant")


POPULARITY_GROUPS_TEXT = (
    "Popularity groups P1 (most popular) to PG: items sorted by their number of training "
    "interactions (every interaction of the training split before subsampling, not only the "
    "sampled training targets), ties broken by item id, cut into G groups of equal item counts."
)


def popularity_ranks(counts: np.ndarray) -> np.ndarray:
    """``[n]`` 0-based rank of each item: count descending, ties by item id ascending."""
    counts = np.asarray(counts)
    order = np.lexsort((np.arange(counts.size), -counts.astype(np.float64)))
    ranks = np.empty(counts.size, dtype=np.int64)
    ranks[order] = np.arange(counts.size)
    return ranks


def popularity_grouping(counts: np.ndarray, n_groups: int = 5) -> ItemGrouping:
    """G popularity groups of equal item counts from training counts ``[n_items]`` (sorted by
    count, ties by item id; see the module docstring); P1 = most popular."""
    counts = np.asarray(counts, dtype=np.int64)
    if n_groups < 1 or counts.size < n_groups:
        raise RecbiasError(
            f"popularity groups: need 1 <= n_groups <= {counts.size} items, got {n_groups}"
        )
    n = counts.size
    sizes = [n // n_groups + (g < n % n_groups) for g in range(n_groups)]
    group_of = np.repeat(np.arange(n_groups), sizes)[popularity_ranks(counts)]
    labels = []
    for g in range(n_groups):
        members = counts[group_of == g]
        top = "most popular, " if g == 0 else ""
        labels.append(f"P{g + 1} ({top}counts {members.min()}–{members.max()})")
    return ItemGrouping.from_labels("popularity", group_of, labels)


def genre_grouping(
    genres: Sequence[Sequence[str]], keep: Sequence[str] | None = None
) -> ItemGrouping:
    """SPRec genre groups: item i adds ``1/|G_i|`` to each of its genres (those in ``keep``,
    default all genres seen, in sorted order). Items with no kept genre are ungrouped."""
    labels = sorted({g for gs in genres for g in gs}) if keep is None else list(keep)
    if not labels:
        raise RecbiasError("genre grouping: no genres")
    index = {g: j for j, g in enumerate(labels)}
    w = np.zeros((len(genres), len(labels)))
    for row, gs in enumerate(genres):
        kept = sorted({index[g] for g in gs if g in index})
        if kept:
            w[row, kept] = 1.0 / len(kept)
    return ItemGrouping("genre", labels, w)


def genres_of(items: pd.DataFrame, column: str = "genres") -> list[list[str]]:
    """Genre lists of a prepared dataset's items table (``PreparedDataset.items``)."""
    if column not in items.columns:
        raise DataError(f"items table: no column {column!r}; the dataset has no genre information")
    out = []
    for item, gs in zip(items["item"], items[column], strict=True):
        if gs is None or isinstance(gs, float):  # missing value
            out.append([])
        elif isinstance(gs, str) or not all(isinstance(g, str) for g in gs):
            raise DataError(
                f"items table: column {column!r} of item {item} must be a list of strings"
            )
        else:
            out.append(list(gs))
    return out
