"""Attention of a causal-LM recommender to each history item, by recency (000, Prop. 4.1).

The positional channel of the paper says that a recommender whose attention decays with distance
puts most of its history attention on the last few items. For an LLM recommender over a prompt the
decision position is the last prompt token: its next-token distribution is the first step of every
decoded item. At that query we take the attention probabilities of every head of every layer,
average them (heads and layers equally weighted), and sum them over the tokens of each history
item's span (:class:`recbias.prompts.Span`, so titles of any length and semantic-ID runs are
handled alike). The rest of the mass lies on the task text, separators and the response prefix.

    att = history_attention(model, samples, pad_id=tok.pad_token_id)
    att.mass        # [n, L] mass per history item, right-aligned: column -1 = most recent
    att.share       # the same, divided by the row's total history mass (rows sum to 1)
    near_share(att, window=2)      # [n] share on the 2 most recent items
    uniform_near_share(att, 2)     # [n] what equal attention per item would give

Prompts are right-padded in a batch: causal attention never lets a real position see a later pad,
so every row's last real position gets exactly the probabilities of an unpadded forward (a test
checks this). Attention probabilities need the eager implementation; the model is switched to it
for the call and back afterwards.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from recbias.errors import ModelError
from recbias.lm.batching import TokenizedSample
from recbias.metrics.stats import bootstrap_ci
from recbias.report.format import round_cell
from recbias.report.plotting import agg_pyplot, save_figure
from recbias.report.sections import Figure, Section, Table


@dataclass(frozen=True)
class HistoryAttention:
    mass: np.ndarray  # [n, L] float64, NaN left of a shorter history
    share: np.ndarray  # [n, L] mass / row total over the history items
    lengths: np.ndarray  # [n] history items per sample


@contextlib.contextmanager
def eager_attention(model: torch.nn.Module) -> Iterator[None]:
    """Run ``model`` with eager attention (the only one that returns probabilities)."""
    config = getattr(model, "config", None)
    before = getattr(config, "_attn_implementation", None)
    if before is None or before == "eager":
        yield
        return
    model.set_attn_implementation("eager")
    try:
        yield
    finally:
        model.set_attn_implementation(before)


def _batch(samples: Sequence[TokenizedSample], pad_id: int, device: torch.device):
    lengths = [len(s.prompt.input_ids) for s in samples]
    ids = torch.full((len(samples), max(lengths)), pad_id, dtype=torch.long)
    mask = torch.zeros_like(ids)
    for row, s in enumerate(samples):
        ids[row, : lengths[row]] = torch.tensor(s.prompt.input_ids)
        mask[row, : lengths[row]] = 1
    return ids.to(device), mask.to(device), torch.tensor(lengths, device=device) - 1


@torch.no_grad()
def decision_attention(
    model: torch.nn.Module, samples: Sequence[TokenizedSample], pad_id: int, batch_size: int = 8
) -> list[np.ndarray]:
    """Per sample: ``[prompt_len]`` attention of the last prompt position, mean over heads/layers."""
    device = next(model.parameters()).device
    out: list[np.ndarray] = []
    with eager_attention(model):
        for start in range(0, len(samples), batch_size):
            chunk = samples[start : start + batch_size]
            ids, mask, last = _batch(chunk, pad_id, device)
            res = model(input_ids=ids, attention_mask=mask, output_attentions=True)
            if not res.attentions:
                raise ModelError("the model returned no attention probabilities")
            rows = torch.arange(len(chunk), device=device)
            per_layer = [a[rows, :, last].float().mean(1) for a in res.attentions]  # [B, S]
            mean = torch.stack(per_layer).mean(0).cpu().double().numpy()
            out.extend(mean[i, : int(last[i]) + 1] for i in range(len(chunk)))
    return out


def history_attention(
    model: torch.nn.Module,
    samples: Sequence[TokenizedSample],
    pad_id: int,
    batch_size: int = 8,
) -> HistoryAttention:
    """Attention mass per history item at the decision position (module doc)."""
    if not samples:
        raise ModelError("history attention needs at least one sample")
    probs = decision_attention(model, samples, pad_id, batch_size)
    spans = [s.prompt.spans_of("history") for s in samples]
    width = max(len(sp) for sp in spans)
    mass = np.full((len(samples), width), np.nan)
    for row, (p, sp) in enumerate(zip(probs, spans, strict=True)):
        for j, span in enumerate(sp):
            mass[row, width - len(sp) + j] = p[span.start : span.end].sum()
    total = np.nansum(mass, axis=1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        share = np.where(total > 0, mass / total, np.nan)
    return HistoryAttention(mass, share, np.array([len(sp) for sp in spans]))


def near_share(att: HistoryAttention, window: int) -> np.ndarray:
    """[n] share of the history attention on the ``window`` most recent items."""
    return np.nansum(att.share[:, -window:], axis=1)


def uniform_near_share(att: HistoryAttention, window: int) -> np.ndarray:
    """[n] the near share if every history item got the same attention: min(w, len) / len."""
    lengths = np.maximum(att.lengths, 1)
    return np.minimum(window, lengths) / lengths


def share_by_recency(att: HistoryAttention) -> np.ndarray:
    """[L] mean share of the item at each recency (index 0 = most recent), over samples that
    have an item there."""
    flipped = att.share[:, ::-1]
    counts = np.sum(~np.isnan(flipped), axis=0)
    sums = np.nansum(flipped, axis=0)
    return np.where(counts > 0, sums / np.maximum(counts, 1), np.nan)


def positional_summary(
    att: HistoryAttention, window: int, n_boot: int = 1000, seed: int = 0
) -> dict[str, float]:
    """Near-window share (95% CI), its uniform reference and their ratio; last-item share."""
    keep = att.lengths > window  # a history no longer than the window has share 1 trivially
    if not keep.any():
        raise ModelError(f"no history is longer than the window of {window} items")
    sub = HistoryAttention(att.mass[keep], att.share[keep], att.lengths[keep])
    near, uniform = near_share(sub, window), uniform_near_share(sub, window)
    ci = bootstrap_ci(near, n_boot, seed=seed)
    return {
        "samples": int(keep.sum()),
        "near_share": ci.mean,
        "lo": ci.lo,
        "hi": ci.hi,
        "uniform_share": float(uniform.mean()),
        "ratio": float(near.mean() / uniform.mean()),
        "last_item_share": float(np.nanmean(sub.share[:, -1])),
        "history_mass": float(np.nanmean(np.nansum(sub.mass, axis=1))),
    }


_COLUMNS = ["model", "samples", "near share", "lo", "hi", "uniform", "ratio", "last item",
            "history mass"]  # fmt: skip


def positional_section(
    results: Mapping[str, HistoryAttention],
    out_dir: Path,
    window: int,
    n_boot: int = 1000,
    seed: int = 0,
) -> Section:
    """Table of near-window attention shares per model and a recency profile figure."""
    sec = Section("positional", "Positional attention to recent history items")
    rows, data = [], {}
    for model, att in results.items():
        s = positional_summary(att, window, n_boot, seed)
        data[model] = s | {"by_recency": [round_cell(v) for v in share_by_recency(att)]}
        rows.append([model] + [round_cell(s[k]) for k in (
            "samples", "near_share", "lo", "hi", "uniform_share", "ratio", "last_item_share",
            "history_mass")])  # fmt: skip
    caption = (f"Share of the history attention (mean over heads and layers, at the last prompt "
               f"position) on the {window} most recent items, with a 95% bootstrap CI over "
               "samples; 'uniform' is the share if every item got equal attention and 'ratio' "
               "their quotient (> 1 = a recency bias, the positional channel of 000 Prop. 4.1). "
               "Samples whose history is no longer than the window are left out. 'History mass' "
               "is the part of all attention that lands on history items at all.")  # fmt: skip
    sec.tables.append(Table("positional", caption, _COLUMNS, rows))
    sec.data["positional"] = data
    sec.figures.append(_recency_figure(results, out_dir))
    return sec


def _recency_figure(results: Mapping[str, HistoryAttention], out_dir: Path) -> Figure:
    plt = agg_pyplot()
    fig, ax = plt.subplots(figsize=(5, 3))
    for model, att in results.items():
        profile = share_by_recency(att)
        ax.plot(np.arange(1, len(profile) + 1), profile, marker="o", label=model)
    ax.set_xlabel("history item (1 = most recent)")
    ax.set_ylabel("mean share of history attention")
    ax.legend(fontsize=8)
    caption = ("Mean share of the history attention on the item at each recency, over the "
               "samples that have an item there.")  # fmt: skip
    return Figure(save_figure(fig, out_dir, "positional_recency"), caption)
