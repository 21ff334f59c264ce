"""Feature-ablation attribution (FAA) of the target's log-probability to prompt segments.

GDRT §2.2.1 (Figures 2, 7, 13, 14) measures context bias as the ratio of the attribution of the
auxiliary tokens (task description; the first already-generated token of the item) to that of the
user's interaction tokens. The paper gives no formula; ours, for a sample with prompt x and
target tokens y_1..y_T (title, terminator and EOS, as trained) and a feature f:

    A_f = Σ_{t ∈ S_f} [ log p(y_t | x, y_<t) − log p(y_t | x̃_f, ỹ_<t) ]

i.e. the drop of the target log-probability when f is ablated (Captum's FeatureAblation with a
``log_prob`` target). Features and their scored token sets S_f:

- ``task``: the instruction head (first prompt segment: preamble, instruction, input lead-in);
  S = all target tokens. ``response_prefix``: the "### Response:" segment (optional).
- ``history``: the whole history block (titles and the separators between them), as GDRT Eq. 2
  masks it; ``item_j``: history title j (0 = oldest) with one adjacent separator when removed.
- ``first_token``: target token y_1 used as context, S = {t ≥ 2} (y_1 itself is not scored: it
  cannot be conditioned on itself). This is "prefix tokens of the predicted item (take the first
  token)" of Figure 2.

Ablation (``ablation``): ``remove`` deletes the tokens; ``placeholder`` replaces the segment by the
tokens of ``placeholder`` ("N/A", the paper's history mask; the history block then equals the Eq. 2
prompt) or, with ``placeholder_token`` set, replaces every token by that id (lengths kept: Captum's
``TextTokenInput`` baseline). Reported: ``attr_sum`` (Σ over S_f), ``attr_mean`` (÷|S_f|) and
``attr_sum_t2`` (Σ over S_f ∩ {t ≥ 2}). Ratios use absolute sums: task/history over all target
tokens, first_token/history over t ≥ 2 (the same scored tokens on both sides), so sum and mean
give the same ratios.

Batching: each sample gives 1 + n_features token sequences. Sequences are grouped by a shared
un-ablated prefix (every variant that keeps the instruction head starts with the same BOS + head
tokens); that prefix is run once and its KV cache is expanded to each batch, the rest is
right-padded in length-sorted batches, and logits are computed only at the scored positions.
Under several processes the sample chunks are dealt round-robin to the ranks and the rows gathered
on every rank (same table as one process).

    cfg = AttributionConfig(ablation="placeholder")
    res = attribute(model, builder, samples, titles, cfg)
    res.table                 # one row per (sample, feature)
    summarize_ratios(res)     # mean [CI], median, ratio of means per ratio
    sec = attribution_section({"base": res_base, "sft": res}, out_dir)   # Figures 2 and 7
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import numpy as np
import pandas as pd
import torch
from transformers import DynamicCache

from recbias import distributed
from recbias.config import Config, invalid, spec
from recbias.decoding.kv import eval_mode, model_device
from recbias.errors import RecbiasError
from recbias.lm.loading import autocast
from recbias.metrics.stats import bootstrap_ci
from recbias.prompts import EncodedPrompt, PromptBuilder
from recbias.report.format import round_cell
from recbias.report.plotting import agg_pyplot, save_figure
from recbias.report.sections import Figure, Section, Table

if TYPE_CHECKING:
    pass

log = logging.getLogger(__name__)
FeatureName = Literal["task", "history", "items", "first_token", "response_prefix"]
TABLE_COLUMNS = [
    "sample_id", "feature", "kind", "position", "item", "n_tokens",
    "logp_original", "logp_ablated", "attr_sum", "attr_mean", "attr_sum_t2",
]  # fmt: skip


@dataclass
class AttributionConfig(Config):
    """Settings of feature-ablation attribution (module docstring for the definitions)."""

    ablation: Literal["remove", "placeholder"] = field(
        default="placeholder",
        metadata={"help": "remove the segment's tokens, or replace them by the placeholder"},
    )
    placeholder: str = field(
        default="N/A", metadata={"help": "text standing for an ablated segment (GDRT Eq. 2)"}
    )
    placeholder_token: int | None = field(
        default=None,
        metadata={
            "help": "if set, placeholder ablation replaces every token of the segment by this "
            "token id (lengths kept, as Captum's TextTokenInput baseline) instead of the text",
            "ge": 0,
        },
    )
    features: list[FeatureName] = field(
        default_factory=lambda: ["task", "history", "items", "first_token"],
        metadata=spec(
            "segments to ablate; 'items' = each history title separately", min_len=1, unique=True
        ),
    )
    batch_size: int = field(default=16, metadata=spec("sequences per forward pass", ge=1))
    sample_chunk: int = field(
        default=64, metadata=spec("samples whose variants are pooled and length-sorted", ge=1)
    )
    dtype: Literal["auto", "bf16", "fp32"] = field(
        default="auto",
        metadata={"help": "bf16 autocast, fp32, or auto (bf16 where the device runs it fast)"},
    )
    share_prefix: bool = field(
        default=True,
        metadata={"help": "run the shared un-ablated prefix (BOS + instruction) once per chunk"},
    )

    def check(self) -> None:
        if (
            self.ablation == "placeholder"
            and self.placeholder_token is None
            and not self.placeholder
        ):
            raise invalid("placeholder", "must be non-empty for placeholder ablation", "")


@dataclass(frozen=True)
class Variant:
    """One token sequence to score: ``ids`` [L] = prompt (+ target context); ``scored`` are the
    positions in ``ids`` of the scored target tokens and ``steps`` their target indices t (0-based)."""

    sample: int
    feature: str
    position: int
    item: int
    ids: tuple[int, ...]
    scored: tuple[int, ...]
    steps: tuple[int, ...]
    share: int  # length of the prefix shared with other variants (run once, cached)


@dataclass
class AttributionResult:
    """``table``: one row per (sample, feature) with the columns of ``TABLE_COLUMNS``."""

    table: pd.DataFrame
    config: AttributionConfig

    def ratios(self) -> pd.DataFrame:
        """Per sample: ``task_history`` = |A_task|/|A_history| and ``prefix_history`` =
        |A_first_token|/|A_history, t≥2|; NaN where a feature is missing or the denominator is 0."""
        wide = self.table.pivot_table(
            index="sample_id",
            columns="feature",
            values=["attr_sum", "attr_sum_t2"],
            aggfunc="first",
        )
        out = pd.DataFrame(index=wide.index)
        hist = _col(wide, "attr_sum", "history").abs()
        hist2 = _col(wide, "attr_sum_t2", "history").abs()
        out["task_history"] = _safe_div(_col(wide, "attr_sum", "task").abs(), hist)
        out["prefix_history"] = _safe_div(_col(wide, "attr_sum", "first_token").abs(), hist2)
        out["abs_task"], out["abs_prefix"] = (
            _col(wide, "attr_sum", "task").abs(),
            _col(wide, "attr_sum", "first_token").abs(),
        )
        out["abs_history"], out["abs_history_t2"] = hist, hist2
        return out.reset_index()


def _col(wide: pd.DataFrame, value: str, feature: str) -> pd.Series:
    key = (value, feature)
    return wide[key] if key in wide.columns else pd.Series(np.nan, index=wide.index)


def _safe_div(num: pd.Series, den: pd.Series) -> pd.Series:
    return (num / den.where(den > 0)).astype(float)


# --------------------------------------------------------------------------- variants


def _placeholder_ids(builder: PromptBuilder, cfg: AttributionConfig, length: int) -> list[int]:
    if cfg.ablation == "remove":
        return []
    if cfg.placeholder_token is not None:
        return [cfg.placeholder_token] * length
    return list(builder._tok(cfg.placeholder))


def _segment_ranges(
    enc: EncodedPrompt, features: Sequence[str]
) -> list[tuple[str, int, int, int, int]]:
    """(feature, position, item, start, end) of every ablatable segment; tokens [start, end)."""
    prompt_spans = [s for s in enc.spans if s.kind != "target" and s.end > s.start]
    hist = enc.spans_of("history")
    out: list[tuple[str, int, int, int, int]] = []
    if "task" in features and prompt_spans and prompt_spans[0].kind == "task":
        out.append(("task", -1, -1, prompt_spans[0].start, prompt_spans[0].end))
    if "history" in features and hist:
        out.append(("history", -1, -1, hist[0].start, hist[-1].end))
    if "items" in features:
        out.extend((f"item_{j}", j, int(s.item if s.item is not None else -1), s.start, s.end)
                   for j, s in enumerate(hist))  # fmt: skip
    if "response_prefix" in features:
        out.extend(("response_prefix", -1, -1, s.start, s.end)
                   for s in enc.spans_of("response_prefix") if s.end > s.start)  # fmt: skip
    return out


def _removal_range(enc: EncodedPrompt, j: int) -> tuple[int, int]:
    """History title j plus one separator (the following one, else the preceding one)."""
    hist = enc.spans_of("history")
    if j + 1 < len(hist):
        return hist[j].start, hist[j + 1].start
    if j > 0:
        return hist[j - 1].end, hist[j].end
    return hist[j].start, hist[j].end


def build_variants(
    builder: PromptBuilder, enc: EncodedPrompt, sample: int, cfg: AttributionConfig
) -> list[Variant]:
    """The original sequence and one ablated sequence per feature of one encoded sample."""
    full, n_prompt, n_target = enc.full_ids, len(enc.input_ids), len(enc.target_ids)
    head = next((s for s in enc.spans if s.end > s.start), None)
    head_end = head.end if head is not None and head.kind == "task" else 0
    cap = n_prompt - 1  # the logit of y_1 comes from the last prompt position

    def make(feature: str, pos: int, item: int, a: int, b: int, steps: range) -> Variant:
        repl = _placeholder_ids(builder, cfg, b - a) if feature != "original" else full[a:b]
        ids = (*full[:a], *repl, *full[b:])
        shift = len(repl) - (b - a)
        scored = tuple(n_prompt + t + shift for t in steps)
        share = min(a, head_end, cap + shift) if cfg.share_prefix else 0
        return Variant(sample, feature, pos, item, ids, scored, tuple(steps), max(share, 0))

    out = [make("original", -1, -1, n_prompt, n_prompt, range(n_target))]
    for feature, pos, item, a, b in _segment_ranges(enc, cfg.features):
        if cfg.ablation == "remove" and pos >= 0:
            a, b = _removal_range(enc, pos)
        out.append(make(feature, pos, item, a, b, range(n_target)))
    if "first_token" in cfg.features and n_target >= 2:
        out.append(make("first_token", -1, -1, n_prompt, n_prompt + 1, range(1, n_target)))
    return out


# --------------------------------------------------------------------------- scoring


def score_variants(
    model: torch.nn.Module, variants: Sequence[Variant], batch_size: int, dtype: str = "fp32"
) -> list[np.ndarray]:
    """Log-prob of each variant's scored tokens: one float64 array [len(scored)] per variant."""
    groups: dict[tuple[int, ...], list[int]] = {}
    for i, v in enumerate(variants):
        groups.setdefault(v.ids[: v.share], []).append(i)
    out: list[np.ndarray] = [np.empty(0)] * len(variants)
    device = model_device(model)
    with torch.inference_mode(), eval_mode(model), autocast(dtype, device):
        for prefix, members in groups.items():
            cache = model(torch.tensor([prefix], device=device), use_cache=True) if prefix else None
            members.sort(key=lambda i: (len(variants[i].ids), i))
            for start in range(0, len(members), batch_size):
                rows = members[start : start + batch_size]
                kv = cache.past_key_values if cache is not None else None
                logp = _score_batch(model, [variants[i] for i in rows], len(prefix), kv)
                for i, values in zip(rows, logp, strict=True):
                    out[i] = values
    return out


def _score_batch(
    model: torch.nn.Module, batch: Sequence[Variant], n_prefix: int, prefix_kv: DynamicCache | None
) -> list[np.ndarray]:
    """Right-padded forward of the suffixes after a shared prefix of ``n_prefix`` tokens."""
    device = model_device(model)
    suffixes = [v.ids[n_prefix:] for v in batch]
    width = max(len(s) for s in suffixes)
    ids = torch.zeros((len(batch), width), dtype=torch.long, device=device)
    keep = torch.zeros((len(batch), width), dtype=torch.bool, device=device)
    wanted = torch.zeros((len(batch), width), dtype=torch.long, device=device)
    for row, (v, s) in enumerate(zip(batch, suffixes, strict=True)):
        ids[row, : len(s)] = torch.tensor(s, device=device)
        logit_pos = torch.tensor([p - 1 - n_prefix for p in v.scored], device=device)
        keep[row, logit_pos] = True
        wanted[row, logit_pos] = torch.tensor([v.ids[p] for p in v.scored], device=device)
    mask = torch.ones((len(batch), n_prefix + width), dtype=torch.long, device=device)
    kwargs: dict = {"attention_mask": mask}
    if prefix_kv is not None:
        layers = [(k.expand(len(batch), -1, -1, -1), v.expand(len(batch), -1, -1, -1))
                  for k, v, *_ in prefix_kv]  # fmt: skip
        kwargs["past_key_values"] = DynamicCache(layers, config=model.config)
        kwargs["position_ids"] = (n_prefix + torch.arange(width, device=device)).expand(
            len(batch), -1
        )
    # logits_to_keep as 1-D column indices (the documented form; a 2-D mask needs transformers
    # > 5.17): the union of the scored columns, then each row's own scored positions.
    cols = keep.any(dim=0).nonzero().squeeze(1)
    logits = model(input_ids=ids, logits_to_keep=cols, **kwargs).logits  # [B, C, V]
    logits = logits[keep[:, cols]].float()  # [n_keep, V], row-major like keep
    target = wanted[keep]
    logp = logits.gather(1, target[:, None]).squeeze(1) - torch.logsumexp(logits, dim=-1)
    counts = keep.sum(dim=1).tolist()
    return [x.double().cpu().numpy() for x in torch.split(logp, counts)]


# --------------------------------------------------------------------------- driver


def attribute(
    model: torch.nn.Module,
    builder: PromptBuilder,
    samples: pd.DataFrame,
    titles: Sequence[str],
    cfg: AttributionConfig,
) -> AttributionResult:
    """Feature-ablation attribution of every sample's target (columns: sample_id, history, target)."""
    cfg.validate()
    check_samples(samples)
    records = list(zip(samples["sample_id"], samples["history"], samples["target"], strict=True))
    starts = list(range(0, len(records), cfg.sample_chunk))
    parts: list[list[list]] = []
    for start in distributed.shard(starts):  # several processes: chunks dealt round-robin
        chunk = records[start : start + cfg.sample_chunk]
        variants: list[Variant] = []
        for sid, hist, target in chunk:
            items = [int(i) for i in hist]
            enc = builder.encode([titles[i] for i in items], items, titles[int(target)])
            variants.extend(build_variants(builder, enc, int(sid), cfg))
        scores = score_variants(model, variants, cfg.batch_size, cfg.dtype)
        parts.append(_rows(variants, scores))
        log.info("attributed samples %d-%d of %d", start, start + len(chunk), len(records))
    rows = [row for part in distributed.gather_shards(parts, len(starts)) for row in part]
    return AttributionResult(pd.DataFrame(rows, columns=TABLE_COLUMNS), cfg)


def _rows(variants: Sequence[Variant], scores: Sequence[np.ndarray]) -> list[list]:
    rows, original = [], None
    for v, s in zip(variants, scores, strict=True):
        if v.feature == "original":
            original = s
            continue
        assert original is not None  # build_variants puts the original first
        drop = original[list(v.steps)] - s
        t2 = drop[np.asarray(v.steps) >= 1]
        kind = "item" if v.feature.startswith("item_") else v.feature
        rows.append([
            v.sample, v.feature, kind, v.position, v.item, len(v.steps),
            float(original[list(v.steps)].sum()), float(s.sum()),
            float(drop.sum()), float(drop.mean()), float(t2.sum()),
        ])  # fmt: skip
    return rows


def summarize_ratios(
    result: AttributionResult, n_boot: int = 1000, seed: int = 0
) -> dict[str, dict[str, float]]:
    """Per ratio: n, n_undefined, mean with bootstrap CI (lo, hi), median, and the ratio of mean
    absolute attributions (``ratio_of_means``, the robust aggregate)."""
    ratios = result.ratios()
    pairs = {"task_history": ("abs_task", "abs_history"),
             "prefix_history": ("abs_prefix", "abs_history_t2")}  # fmt: skip
    out: dict[str, dict[str, float]] = {}
    for name, (num, den) in pairs.items():
        values = ratios[name].to_numpy(dtype=float)
        finite = values[np.isfinite(values)]
        entry = {"n": float(len(finite)), "n_undefined": float(len(values) - len(finite))}
        if len(finite):
            ci = bootstrap_ci(finite, n_boot=n_boot, seed=seed)
            entry |= {"mean": ci.mean, "lo": ci.lo, "hi": ci.hi, "median": float(np.median(finite))}
            ok = np.isfinite(ratios[name])
            entry["ratio_of_means"] = float(ratios[num][ok].mean() / ratios[den][ok].mean())
        out[name] = entry
    return out


def check_samples(samples: pd.DataFrame) -> None:
    missing = [c for c in ("sample_id", "history", "target") if c not in samples.columns]
    if missing:
        raise RecbiasError(f"attribution: samples lack columns {missing}")


# --------------------------------------------------------------------------- report

_RATIO_LABELS = {"task_history": "task / history", "prefix_history": "first token / history"}


def attribution_section(
    results: Mapping[str, AttributionResult], out_dir: Path, n_boot: int = 1000, seed: int = 0
) -> Section:
    """Figures 2 and 7: attribution ratios of the same samples under several models (e.g. base vs
    tuned, SFT vs GDRT), a ratio table, and the mean attribution per history position."""
    sec = Section("attribution", "Context-bias attribution (feature ablation)")
    summaries = {label: summarize_ratios(r, n_boot, seed) for label, r in results.items()}
    rows = [[label, _RATIO_LABELS[name], int(e["n"]), int(e["n_undefined"]),
             *(round_cell(e.get(key)) for key in ("mean", "lo", "hi", "median", "ratio_of_means"))]
            for label, summ in summaries.items() for name, e in summ.items()]  # fmt: skip
    columns = ["model", "ratio", "n", "undefined", "mean", "lo", "hi", "median", "ratio of means"]
    caption = ("Per-sample |A_aux| / |A_history| (mean with 95% bootstrap CI, median) and the ratio "
               "of mean absolute attributions. A ratio above 1 means the model leans on the task "
               "description (or on the item's first token) more than on the user's history; GDRT "
               "reports ~1 before SFT and 4.7-6.6 after.")  # fmt: skip
    sec.tables.append(Table("attribution_ratios", caption, columns, rows))
    sec.tables.append(_feature_table(results))
    sec.figures.append(_ratio_figure(summaries, out_dir))
    sec.figures.append(_position_figure(results, out_dir))
    sec.data["ratios"] = summaries
    first = next(iter(results.values())).config
    sec.summary = (f"Ablation '{first.ablation}' ({first.placeholder_token if first.placeholder_token is not None else first.placeholder!r}); "
                   f"attributions are drops of the target's summed log-probability.")  # fmt: skip
    return sec


def _feature_table(results: Mapping[str, AttributionResult]) -> Table:
    rows = []
    for label, r in results.items():
        by_kind = r.table.groupby("kind")
        for kind, g in by_kind:
            means = (g.attr_sum.mean(), g.attr_sum.abs().mean(), g.attr_mean.mean())
            rows.append([label, str(kind), len(g), *map(round_cell, means)])
    caption = (
        "Mean attribution (drop of the target log-probability, nats) per ablated segment "
        "kind; 'item' is one history title. Larger = the prediction depends more on it."
    )
    return Table("attribution_features", caption,
                 ["model", "segment", "rows", "mean sum", "mean |sum|", "mean per token"], rows)  # fmt: skip


def _ratio_figure(summaries: Mapping[str, dict[str, dict[str, float]]], out_dir: Path) -> Figure:
    plt = agg_pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(8, 3))
    labels = list(summaries)
    for ax, name in zip(axes, _RATIO_LABELS, strict=True):
        mean = np.array([summaries[m][name].get("mean", np.nan) for m in labels])
        lo = np.array([summaries[m][name].get("lo", np.nan) for m in labels])
        hi = np.array([summaries[m][name].get("hi", np.nan) for m in labels])
        ax.bar(labels, mean, yerr=np.nan_to_num([mean - lo, hi - mean]), capsize=4)
        ax.axhline(1.0, color="k", ls="--", lw=1)
        ax.set_title(_RATIO_LABELS[name])
        ax.set_ylabel("|A_aux| / |A_history|")
    caption = ("Attribution ratio of auxiliary to history tokens per model (GDRT Figures 2 and 7; "
               "mean with 95% CI). Bars above the dashed line at 1 mean context bias: the "
               "auxiliary tokens move the prediction more than the user's history.")  # fmt: skip
    return Figure(save_figure(fig, out_dir, "attribution_ratios"), caption)


def _position_figure(results: Mapping[str, AttributionResult], out_dir: Path) -> Figure:
    plt = agg_pyplot()
    fig, ax = plt.subplots(figsize=(5, 3))
    for label, r in results.items():
        items = r.table[r.table.kind == "item"]
        if items.empty:
            continue
        recency = items.groupby("sample_id").position.transform("max") - items.position
        curve = items.attr_sum.abs().groupby(recency).mean()
        ax.plot(curve.index, curve.to_numpy(), "o-", label=label)
    ax.set_xlabel("history position (0 = most recent)")
    ax.set_ylabel("mean |attribution| (nats)")
    if ax.lines:
        ax.legend(fontsize=8)
    caption = (
        "Mean absolute attribution of one history title by its recency. A flat, low curve "
        "means the model barely uses individual history items."
    )
    return Figure(save_figure(fig, out_dir, "attribution_positions"), caption)
