"""Token co-occurrence rates of context and target tokens in the training set (GDRT Figure 5).

GDRT §2.2.3 explains context bias by "the co-occurrence rate between auxiliary tokens and target
item tokens [being] significantly higher than those between interaction tokens and target item
tokens ... task prompts appear in every training instance, and prefix tokens are always
accompanied for item tokens". The paper gives no formula; Figure 5 plots rates of *token pairs*.
Our definition, over the training samples i with target tokens Y_i (the target's ids without EOS:
title and terminator) and, per context type, the context tokens X_i(b) of target token b:

- ``task``: every prompt token outside the history titles (template, instruction, separators,
  response prefix); the same for all samples.
- ``history``: the tokens of the sample's history titles.
- ``prefix``: the target tokens before an occurrence of b (y_<t, the already-generated tokens).

    c(a, b) = #{i : b ∈ Y_i, a ∈ X_i(b)},   n(b) = #{i : b ∈ Y_i},   rate(a, b) = c(a, b) / n(b)

i.e. how often context token a accompanies target token b when b is to be predicted. Per type we
report the mean rate over distinct co-occurring pairs (``pair_rate``, Figure 5) and the mean
weighted by how often each pair occurs (``weighted_rate``). Task pairs have rate 1 by construction
(the paper's point). ``overlap`` is a simpler companion: the share of target token positions whose
id also appears among the sample's context tokens of that type.

    rates = cooccurrence_rates(builder, ds.split("train"), ds.titles)
    sec = cooccurrence_section(rates, out_dir)
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import scipy.sparse as sp

from recbias.errors import DataError
from recbias.prompts import EncodedPrompt, PromptBuilder
from recbias.report.plotting import agg_pyplot, save_figure
from recbias.report.sections import Figure, Section, Table

CONTEXT_TYPES = ("task", "prefix", "history")


@dataclass(frozen=True)
class CooccurrenceRate:
    """Rates of one context type (module docstring for the definitions)."""

    context: str
    pair_rate: float
    weighted_rate: float
    pairs: int
    overlap: float


def _split_tokens(enc: EncodedPrompt, eos: int) -> tuple[list[int], list[int], list[int]]:
    """(task tokens, history tokens, target tokens without EOS) of one encoded sample."""
    in_history = np.zeros(len(enc.input_ids), dtype=bool)
    for s in enc.spans_of("history"):
        in_history[s.start : s.end] = True
    ids = np.asarray(enc.input_ids, dtype=np.int64)
    target = [t for t in enc.target_ids if t != eos]
    return ids[~in_history].tolist(), ids[in_history].tolist(), target


def _binary_rows(rows: Sequence[Sequence[int]], vocab: int) -> sp.csr_matrix:
    """[n_samples, vocab] 0/1 matrix: 1 where the token occurs in the row's list."""
    indptr = np.cumsum([0, *(len(r) for r in rows)])
    indices = np.fromiter((t for r in rows for t in r), dtype=np.int64, count=int(indptr[-1]))
    mat = sp.csr_matrix((np.ones(len(indices)), indices, indptr), shape=(len(rows), vocab))
    mat.sum_duplicates()
    mat.data[:] = 1.0
    return mat


def _rates(counts: np.ndarray, n_b: np.ndarray) -> tuple[float, float]:
    """(mean rate over pairs, occurrence-weighted mean rate) of pair counts c and their n(b)."""
    if len(counts) == 0:
        return float("nan"), float("nan")
    rate = counts / n_b
    return float(rate.mean()), float((counts * rate).sum() / counts.sum())


def _matrix_rate(
    x: sp.csr_matrix, y: sp.csr_matrix, n_target: np.ndarray
) -> tuple[float, float, int]:
    pairs = (x.T @ y).tocoo()  # [vocab(a), vocab(b)] sample counts
    return (*_rates(pairs.data, n_target[pairs.col]), int(pairs.nnz))


def _prefix_rate(targets: Sequence[Sequence[int]], vocab: int, n_target: np.ndarray):
    codes = []
    for tgt in targets:
        pairs = {tgt[s] * vocab + tgt[t] for t in range(1, len(tgt)) for s in range(t)}
        codes.extend(pairs)
    if not codes:
        return float("nan"), float("nan"), 0
    uniq, counts = np.unique(np.asarray(codes, dtype=np.int64), return_counts=True)
    return (*_rates(counts.astype(float), n_target[uniq % vocab]), len(uniq))


def _overlap(contexts: Sequence[Sequence[int]], targets: Sequence[Sequence[int]]) -> float:
    hit = total = 0
    for ctx, tgt in zip(contexts, targets, strict=True):
        seen = set(ctx)
        hit += sum(t in seen for t in tgt)
        total += len(tgt)
    return hit / total if total else float("nan")


def cooccurrence_rates(
    builder: PromptBuilder, samples: pd.DataFrame, titles: Sequence[str]
) -> list[CooccurrenceRate]:
    """Figure 5 rates of the task, prefix and history context types over ``samples``."""
    if samples.empty:
        raise DataError("co-occurrence: no training samples")
    vocab, eos = len(builder.tokenizer), builder.tokenizer.eos_token_id
    task, history, targets = [], [], []
    for hist, target in zip(samples["history"], samples["target"], strict=True):
        items = [int(i) for i in hist]
        enc = builder.encode([titles[i] for i in items], items, titles[int(target)])
        t, h, y = _split_tokens(enc, eos)
        task.append(t), history.append(h), targets.append(y)
    y = _binary_rows(targets, vocab)
    n_target = np.asarray(y.sum(axis=0)).ravel()
    prefixes = [[tgt[s] for s in range(t)] for tgt in targets for t in range(1, len(tgt))]
    prefix_targets = [[tgt[t]] for tgt in targets for t in range(1, len(tgt))]
    out = []
    for name, ctx in (("task", task), ("history", history)):
        pair, weighted, n = _matrix_rate(_binary_rows(ctx, vocab), y, n_target)
        out.append(CooccurrenceRate(name, pair, weighted, n, _overlap(ctx, targets)))
    pair, weighted, n = _prefix_rate(targets, vocab, n_target)
    out.insert(1, CooccurrenceRate("prefix", pair, weighted, n, _overlap(prefixes, prefix_targets)))
    return out


def cooccurrence_section(rates: Sequence[CooccurrenceRate], out_dir: Path) -> Section:
    """Table and bar chart of the Figure 5 rates."""
    sec = Section("cooccurrence", "Context–target token co-occurrence in the training set")
    rows = [[r.context, round(r.pair_rate, 4), round(r.weighted_rate, 4), r.pairs, round(r.overlap, 4)]
            for r in rates]  # fmt: skip
    caption = ("rate(a, b) = share of training samples with target token b that also have context "
               "token a (task template / earlier target tokens / history titles). Auxiliary rates "
               "far above the history rate are the shortcut GDRT blames for context bias.")  # fmt: skip
    columns = ["context", "pair rate", "weighted rate", "pairs", "target-token overlap"]
    sec.tables.append(Table("cooccurrence_rates", caption, columns, rows))
    sec.data["rates"] = [r.__dict__ for r in rates]
    plt = agg_pyplot()
    fig, ax = plt.subplots(figsize=(4.5, 3))
    ax.bar([f"{r.context}–target" for r in rates], [r.pair_rate for r in rates],
           color=["tab:orange", "tab:red", "tab:blue"][: len(rates)])  # fmt: skip
    ax.set_ylabel("mean co-occurrence rate")
    ax.set_ylim(0, 1.05)
    fig_caption = ("Co-occurrence rate of token pairs by context type (GDRT Figure 5). Higher "
                   "auxiliary (task, prefix) than history bars mean the training data rewards "
                   "shortcuts through the template and the item's own first tokens.")  # fmt: skip
    sec.figures.append(Figure(save_figure(fig, out_dir, "cooccurrence_rates"), fig_caption))
    sec.summary = "; ".join(f"{r.context}–target pair rate {r.pair_rate:.3f}" for r in rates)
    return sec
