"""Training-curve diagnostics over a sequence of checkpoints (GDRT Figures 4, 6 and 9).

For every checkpoint (a saved model directory fed through a loader, or a callable returning a
model) two things are measured on fixed inputs:

* the share of **top-1 recommendations** per item group, above all group 1 (the items most
  relevant to the auxiliary tokens, GDRT Eq. 2). Top-1 is exact: every candidate item is scored
  by teacher forcing (sum of target-token log-probs, :func:`recbias.decoding.item_token_logprobs`;
  ``length_norm`` divides by the token count) and the best one taken, first on ties;
* the mean **target-token loss per token-relevance group** (GDRT Eq. 3 groups, Figure 6).

The item and token groups are inputs, computed once with a reference model (GDRT uses the model
before or after SFT; the caller decides), so every checkpoint is judged against the same groups.
Checkpoints are loaded one at a time and released before the next.

    rel = token_relevance(ref_model, builder, train_samples, dtype="fp32")
    token_groups = sample_token_groups(rel, relevance_groups(rel, 5, "kmeans"), train_samples)
    curves = training_curves(
        [Checkpoint("epoch-1", Path("runs/x/checkpoints/epoch-1/model")), ...], load_dir,
        builder, titles, prompts_for(builder, titles, test), item_grouping,
        train_samples, token_groups, pad_id=tok.pad_token_id,
    )
    curves.group1_share                      # [n_checkpoints]
    section = training_curves_section(curves, out_dir, target_share=top1.target_share)
"""

from __future__ import annotations

import gc
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from recbias.decoding import item_token_logprobs
from recbias.decoding.kv import model_device
from recbias.diagnostics.token_ig import loss_by_group, target_token_losses
from recbias.errors import RecbiasError
from recbias.lm.batching import TokenizedSample
from recbias.lm.loading import autocast
from recbias.metrics.fairness import ItemGrouping
from recbias.objectives.relevance import TokenRelevance
from recbias.prompts import PromptBuilder
from recbias.report.plotting import agg_pyplot, save_figure
from recbias.report.sections import Figure, Section, Table

ModelSource = str | Path | Callable[[], torch.nn.Module]
ModelLoader = Callable[[Path], torch.nn.Module]


@dataclass(frozen=True)
class Checkpoint:
    """A named model: a directory for the loader, or a zero-argument callable."""

    label: str
    source: ModelSource


def load_checkpoint(ckpt: Checkpoint, loader: ModelLoader | None) -> torch.nn.Module:
    if callable(ckpt.source):
        return ckpt.source()
    if loader is None:
        raise RecbiasError(f"checkpoint {ckpt.label!r}: a path ({ckpt.source}) needs a loader")
    path = Path(ckpt.source)
    if not path.exists():
        raise RecbiasError(f"checkpoint {ckpt.label!r}: {path} does not exist")
    return loader(path)


def prompts_for(
    builder: PromptBuilder, titles: Sequence[str], samples: pd.DataFrame
) -> list[list[int]]:
    """Prompt ids of every sample's history (the decoding prompt), in the frame's order."""
    out = []
    for hist in samples["history"]:
        items = [int(i) for i in hist]
        out.append(builder.encode([titles[i] for i in items], items).input_ids)
    return out


def top1_items(
    model: torch.nn.Module,
    prompts: Sequence[Sequence[int]],
    item_seqs: Sequence[Sequence[int]],
    item_ids: Sequence[int],
    dtype: str = "fp32",
    batch_size: int = 256,
    length_norm: bool = False,
) -> np.ndarray:
    """Best item of each prompt by exact scoring of every candidate: ``[n_prompts]`` item ids."""
    lengths = torch.tensor([len(s) for s in item_seqs], dtype=torch.float32)
    best = np.empty(len(prompts), dtype=np.int64)
    with autocast(dtype, model_device(model)):
        for row, prompt in enumerate(prompts):
            scores = item_token_logprobs(model, prompt, item_seqs, batch_size).sum(dim=1)
            scores = scores / lengths if length_norm else scores
            best[row] = int(item_ids[int(torch.argmax(scores))])  # first maximum on ties
    return best


def sample_token_groups(
    rel: TokenRelevance, groups: np.ndarray, samples: Sequence[TokenizedSample]
) -> torch.Tensor:
    """Broadcast per-item token groups ``[m, T]`` (``relevance_groups``) to ``samples``: ``[n, L]``,
    −1 on padding. A sample whose target item has no row is an error naming it."""
    row_of = {int(i): r for r, i in enumerate(rel.items.tolist())}
    width = max((len(s.prompt.target_ids) for s in samples), default=0)
    out = torch.full((len(samples), width), -1, dtype=torch.long)
    for n, s in enumerate(samples):
        if s.target_item not in row_of:
            raise RecbiasError(
                f"sample {s.sample_id}: target item {s.target_item} has no relevance row"
            )
        length = len(s.prompt.target_ids)
        out[n, :length] = torch.as_tensor(groups[row_of[s.target_item], :length])
    return out


@dataclass(frozen=True)
class TrainingCurves:
    """Per-checkpoint measurements: ``C`` checkpoints, ``G`` item groups, ``Gt`` token groups."""

    labels: list[str]
    group_labels: list[str]
    top1_share: np.ndarray  # [C, G]
    token_loss: np.ndarray  # [C, Gt] mean target-token CE, NaN for an empty group
    token_count: np.ndarray  # [Gt]

    @property
    def group1_share(self) -> np.ndarray:
        """[C] share of top-1 recommendations in group 1 (highest relevance)."""
        return self.top1_share[:, 0]


def training_curves(
    checkpoints: Sequence[Checkpoint],
    loader: ModelLoader | None,
    builder: PromptBuilder,
    titles: Sequence[str],
    prompts: Sequence[Sequence[int]],
    grouping: ItemGrouping,
    token_samples: Sequence[TokenizedSample],
    token_groups: torch.Tensor,
    pad_id: int,
    candidates: Sequence[int] | None = None,
    dtype: str = "fp32",
    batch_size: int = 64,
    length_norm: bool = False,
) -> TrainingCurves:
    """Top-1 group shares on ``prompts`` and token-group losses on ``token_samples`` per checkpoint.

    ``candidates`` (default: the whole catalog) are the items top-1 is chosen from; ``token_groups
    [n, L]`` aligns with ``token_samples`` (:func:`sample_token_groups`).
    """
    if not checkpoints:
        raise RecbiasError("training curves: no checkpoints")
    items = list(range(len(titles))) if candidates is None else [int(i) for i in candidates]
    seqs = [builder.encode_target(titles[i]) for i in items]
    n_token_groups = int(token_groups.max()) + 1
    shares, losses = [], []
    for ckpt in checkpoints:
        model = load_checkpoint(ckpt, loader)
        top1 = top1_items(model, prompts, seqs, items, dtype, batch_size, length_norm)
        mass = grouping.mass(top1)
        shares.append(mass / max(mass.sum(), 1e-300))
        per_tok = target_token_losses(model, token_samples, pad_id, dtype, batch_size)
        mean, count = loss_by_group(per_tok, token_groups, n_token_groups)
        losses.append(mean)
        del model
        gc.collect()
    labels = [c.label for c in checkpoints]
    return TrainingCurves(labels, grouping.labels, np.stack(shares), np.stack(losses), count)


def training_curves_section(
    curves: TrainingCurves,
    out_dir: Path,
    target_share: np.ndarray | None = None,
    model: str = "model",
) -> Section:
    """Table per checkpoint, the group-1 share curve (Fig. 4/9) and per-group losses (Fig. 6)."""
    sec = Section(f"training_curves_{model}", f"Context bias over training ({model})")
    g1 = curves.group1_share
    sec.summary = (
        f"Top-1 share of {curves.group_labels[0]} goes from {g1[0]:.1%} ({curves.labels[0]}) to "
        f"{g1[-1]:.1%} ({curves.labels[-1]})."
    )
    loss_cols = [f"loss token group {g + 1}" for g in range(curves.token_loss.shape[1])]
    cols = ["checkpoint", *[f"top-1 share {lab}" for lab in curves.group_labels], *loss_cols]
    rows = [
        [lab, *[round(float(x), 4) for x in s], *[round(float(x), 4) for x in loss]]
        for lab, s, loss in zip(curves.labels, curves.top1_share, curves.token_loss, strict=True)
    ]
    sec.tables.append(
        Table("training_curves", "Top-1 group shares and token-group losses", cols, rows)
    )
    sec.data["training_curves"] = {
        "labels": curves.labels,
        "group_labels": curves.group_labels,
        "top1_share": curves.top1_share.tolist(),
        "token_loss": curves.token_loss.tolist(),
        "token_count": curves.token_count.tolist(),
    }
    sec.figures.append(_group1_figure(curves, out_dir, target_share, model))
    sec.figures.append(_loss_figure(curves, out_dir, model))
    return sec


def _group1_figure(
    curves: TrainingCurves, out_dir: Path, target_share: np.ndarray | None, model: str
) -> Figure:
    plt = agg_pyplot()
    fig, ax = plt.subplots(figsize=(5, 3))
    ax.plot(
        curves.labels, curves.group1_share, "o-", label=f"top-1 share of {curves.group_labels[0]}"
    )
    if target_share is not None:
        ax.axhline(float(target_share[0]), color="k", ls="--", lw=1, label="share of test targets")
    ax.set_ylim(0, 1)
    ax.set_xlabel("checkpoint")
    ax.set_ylabel("share")
    ax.legend(fontsize=8)
    caption = (
        "Share of top-1 recommendations in item group 1 (highest relevance to the auxiliary "
        "tokens) per checkpoint (GDRT Figures 4, 9). A curve rising above the dashed line "
        "means training increasingly over-recommends auxiliary-relevant items."
    )
    return Figure(save_figure(fig, out_dir, f"training_group1_{model}"), caption)


def _loss_figure(curves: TrainingCurves, out_dir: Path, model: str) -> Figure:
    plt = agg_pyplot()
    fig, ax = plt.subplots(figsize=(5, 3))
    for g in range(curves.token_loss.shape[1]):
        ax.plot(curves.labels, curves.token_loss[:, g], "o-", label=f"token group {g + 1}")
    ax.set_xlabel("checkpoint")
    ax.set_ylabel("mean target-token loss")
    ax.legend(fontsize=8)
    caption = (
        "Mean target-token loss per token-relevance group (GDRT Figure 6; group 1 = most "
        "relevant to the auxiliary tokens). A persistent gap with higher loss for the "
        "low-relevance groups is the context bias GDRT targets."
    )
    return Figure(save_figure(fig, out_dir, f"training_token_loss_{model}"), caption)
