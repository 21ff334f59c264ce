"""Sensitivity of recommendations to the user's own history and to the task wording.

A recommender that personalises must change its lists when the history changes, and should not
change them much when only the instruction is reworded (causal-sensitivity and persona-stability
audits, papers/002). For each perturbation we compare the top-K lists of the original and the
perturbed input per sample:

- ``jaccard``: |A ∩ B| / |A ∪ B| of the two lists' valid items (1.0 = unchanged; two empty lists
  count as 1.0). A model that ignores its input scores 1.0 everywhere.
- ``shared``: |A ∩ B|, the number of items the two lists share, and ``shared / K``. Jaccard is
  not the share kept: two full 10-item lists with Jaccard 0.33 share 5 items (half of each list).
- target rank change: with exact scores (the recommender has ``scores(samples) -> [n, n_items]``,
  e.g. SASRec) the rank is the number of items scoring strictly higher than the target (0-based);
  otherwise it is the target's position in the top-K list, and "not in list" is censored at K
  (a lower bound on the true rank). ``rank_change`` = perturbed − original (positive = worse).

History perturbations build a modified samples DataFrame: ``swap`` (the history of another, random
user's sample), ``shuffle`` (random order), ``truncate`` (keep the last n items), ``replace`` (one
random position gets a random other catalog item). Wording perturbations rebuild the recommender
from a factory ``make_recommender(instruction_text)``; :func:`llm_factory` does this for
:class:`recbias.llmrec.LLMRecommender` (``PromptConfig`` has no instruction field, so
:func:`with_instruction` builds the same template with another ``prompt.instruction``).

    results = history_sensitivity(rec, samples, n_items, SensitivityConfig(k=10))
    results += wording_sensitivity(llm_factory(rec), samples, SensitivityConfig(k=10))
    sec = sensitivity_section({"sft": results}, out_dir)
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd
import torch

from recbias.config import Config, invalid, spec
from recbias.errors import ConfigError, DataError
from recbias.llmrec import LLMRecommender
from recbias.metrics.overlap import jaccard, shared_items
from recbias.metrics.ranking import target_ranks
from recbias.metrics.stats import bootstrap_ci
from recbias.prompts import PromptBuilder
from recbias.recs import Recommendations, Recommender
from recbias.report.format import round_cell
from recbias.report.plotting import agg_pyplot, save_figure
from recbias.report.sections import Figure, Section, Table

Perturbation = Literal["swap", "shuffle", "truncate", "replace"]
# {item}, {items}, {verb} are the dataset's domain words (recbias.domain.Domain).
BUILTIN_INSTRUCTIONS = [
    "Based on the {items} this user has {verb}, suggest one more {item} they would enjoy.",
    "Recommend a {item} for this user, taking into account the {items} they have {verb} before.",
    "Here are {items} a user has {verb}. Which {item} would they like next?",
]


# The instruction sentence of each built-in template, as it appears in PromptBuilder.head.
@dataclass
class SensitivityConfig(Config):
    k: int = field(default=10, metadata=spec("length of the compared top-K lists", ge=1))
    perturbations: list[Perturbation] = field(
        default_factory=lambda: ["swap", "shuffle", "truncate", "replace"],
        metadata=spec("history perturbations to run", unique=True),
    )
    truncate_keep: int = field(default=3, metadata=spec("'truncate' keeps the last n items", ge=1))
    instructions: list[str] = field(
        default_factory=list,
        metadata={"help": "extra instruction paraphrases ({item}, {items}, {verb} allowed)"},
    )
    builtin_instructions: bool = field(
        default=True, metadata={"help": "also use the 3 built-in paraphrases"}
    )
    seed: int = field(default=0, metadata={"help": "seed of the random perturbations"})
    n_boot: int = field(default=1000, metadata=spec("bootstrap resamples for the CIs", ge=1))

    def check(self) -> None:
        for i, text in enumerate(self.instructions):
            if not text.strip():
                raise invalid(f"instructions[{i}]", "must be non-empty text", text)

    def paraphrases(self) -> list[str]:
        return (BUILTIN_INSTRUCTIONS if self.builtin_instructions else []) + list(self.instructions)


@dataclass
class SensitivityResult:
    """Per-sample comparison of original vs perturbed lists (``[n]`` arrays, samples' order)."""

    name: str
    group: Literal["history", "wording"]
    jaccard: np.ndarray
    shared: np.ndarray  # [n] |A ∩ B|
    rank_original: np.ndarray
    rank_perturbed: np.ndarray
    exact_ranks: bool
    k: int

    @property
    def rank_change(self) -> np.ndarray:
        return self.rank_perturbed - self.rank_original

    def summary(self, n_boot: int = 1000, seed: int = 0) -> dict[str, float]:
        ci = bootstrap_ci(self.jaccard, n_boot=n_boot, seed=seed)
        out = {"jaccard": ci.mean, "lo": ci.lo, "hi": ci.hi,
               "median_jaccard": float(np.median(self.jaccard)),
               "identical": float(np.mean(self.jaccard == 1.0)),
               "shared_items": float(np.mean(self.shared)),
               "shared_share": float(np.mean(self.shared)) / self.k}  # fmt: skip
        seen = (self.rank_original < self.k) | (self.rank_perturbed < self.k)
        keep = np.ones_like(seen) if self.exact_ranks else seen
        out["mean_rank_change"] = float(self.rank_change[keep].mean()) if keep.any() else np.nan
        if not self.exact_ranks:
            out["target_left_list"] = float(
                np.mean((self.rank_original < self.k) & ~(self.rank_perturbed < self.k))
            )
            out["target_entered_list"] = float(np.mean(~(self.rank_original < self.k) & (self.rank_perturbed < self.k)))  # fmt: skip
        return out


# --------------------------------------------------------------------------- perturbations


def _histories(samples: pd.DataFrame) -> list[list[int]]:
    return [[int(i) for i in h] for h in samples["history"]]


def _with_histories(samples: pd.DataFrame, histories: list[list[int]]) -> pd.DataFrame:
    out = samples.copy()
    out["history"] = pd.Series(histories, index=samples.index, dtype=object)
    return out


def swap_history(samples: pd.DataFrame, seed: int) -> pd.DataFrame:
    """Each sample gets the history of a random sample of another user."""
    users = samples["user"].to_numpy() if "user" in samples else np.arange(len(samples))
    if len(set(users.tolist())) < 2:
        raise DataError("sensitivity 'swap': needs samples of at least two users")
    rng, hist = np.random.default_rng(seed), _histories(samples)
    out = []
    for u in users:
        others = np.flatnonzero(users != u)
        out.append(list(hist[int(rng.choice(others))]))
    return _with_histories(samples, out)


def shuffle_history(samples: pd.DataFrame, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return _with_histories(samples, [list(np.asarray(h)[rng.permutation(len(h))].tolist()) for h in _histories(samples)])  # fmt: skip


def truncate_history(samples: pd.DataFrame, keep: int) -> pd.DataFrame:
    return _with_histories(samples, [h[-keep:] for h in _histories(samples)])


def replace_item(samples: pd.DataFrame, n_items: int, seed: int) -> pd.DataFrame:
    """One random position of each non-empty history gets a random different catalog item."""
    if n_items < 2:
        raise DataError("sensitivity 'replace': the catalog needs at least two items")
    rng, out = np.random.default_rng(seed), []
    for h in _histories(samples):
        if h:
            pos = int(rng.integers(len(h)))
            new = int(rng.integers(n_items - 1))
            h[pos] = new + (new >= h[pos])  # uniform over the other items
        out.append(h)
    return _with_histories(samples, out)


def perturb(samples: pd.DataFrame, name: str, n_items: int, cfg: SensitivityConfig) -> pd.DataFrame:
    if name == "swap":
        return swap_history(samples, cfg.seed)
    if name == "shuffle":
        return shuffle_history(samples, cfg.seed)
    if name == "truncate":
        return truncate_history(samples, cfg.truncate_keep)
    if name == "replace":
        return replace_item(samples, n_items, cfg.seed)
    raise ConfigError(f"config key 'perturbations': unknown perturbation {name!r}")


# --------------------------------------------------------------------------- comparisons


def _ranks(
    rec: Recommender, samples: pd.DataFrame, recs: Recommendations
) -> tuple[np.ndarray, bool]:
    """Exact 0-based target ranks from ``rec.scores`` if it has them, else K-censored list ranks."""
    targets = samples["target"].to_numpy(dtype=np.int64)
    scores_fn = getattr(rec, "scores", None)
    if callable(scores_fn):
        scores = scores_fn(samples)
        scores = scores.detach().cpu().numpy() if torch.is_tensor(scores) else np.asarray(scores)
        own = scores[np.arange(len(targets)), targets]
        return (scores > own[:, None]).sum(axis=1).astype(float), True
    ranks = target_ranks(recs.items, targets).astype(float)
    return np.where(ranks < 0, recs.k, ranks), False


def compare(
    rec: Recommender, original: pd.DataFrame, perturbed: pd.DataFrame, k: int, name: str, group: str
) -> SensitivityResult:
    """Recommend for both inputs and compare per sample (``perturbed`` keeps the sample ids)."""
    ids = original["sample_id"].to_numpy()
    a = rec.recommend(original, k)
    b = rec.recommend(perturbed, k)
    a, b = a.reorder(ids), b.reorder(ids)
    r_a, exact = _ranks(rec, original, a)
    r_b, _ = _ranks(rec, perturbed, b)
    overlap = jaccard(a.items, b.items), shared_items(a.items, b.items)
    return SensitivityResult(name, group, *overlap, r_a, r_b, exact, k)  # type: ignore[arg-type]


def history_sensitivity(
    rec: Recommender, samples: pd.DataFrame, n_items: int, cfg: SensitivityConfig
) -> list[SensitivityResult]:
    """One result per configured history perturbation."""
    cfg.validate()
    return [compare(rec, samples, perturb(samples, p, n_items, cfg), cfg.k, p, "history")
            for p in cfg.perturbations]  # fmt: skip


# --------------------------------------------------------------------------- wording


def with_instruction(builder: PromptBuilder, instruction: str) -> PromptBuilder:
    """A builder like ``builder`` whose task sentence is ``instruction`` (domain words filled)."""
    cfg = dataclasses.replace(builder.cfg, instruction=instruction)
    return PromptBuilder(builder.tokenizer, cfg, builder.domain)


def llm_factory(rec: LLMRecommender) -> Callable[[str | None], LLMRecommender]:
    """``make_recommender(instruction)`` for an LLM recommender; None = the template's wording."""

    def make(instruction: str | None) -> LLMRecommender:
        builder = rec.builder if instruction is None else with_instruction(rec.builder, instruction)
        return LLMRecommender(
            rec.model, builder, rec.titles, rec.trie, rec.beam, rec.dtype, rec.hooks
        )

    return make


def wording_sensitivity(
    make_recommender: Callable[[str | None], Recommender],
    samples: pd.DataFrame,
    cfg: SensitivityConfig,
    reference: str | None = None,
) -> list[SensitivityResult]:
    """Lists under each paraphrase vs under ``reference`` (None = the template's own wording)."""
    cfg.validate()
    ids = samples["sample_id"].to_numpy()
    base = make_recommender(reference)
    a = base.recommend(samples, cfg.k).reorder(ids)
    r_a, exact = _ranks(base, samples, a)
    out = []
    for i, text in enumerate(cfg.paraphrases()):
        rec = make_recommender(text)
        b = rec.recommend(samples, cfg.k).reorder(ids)
        r_b, _ = _ranks(rec, samples, b)
        overlap = jaccard(a.items, b.items), shared_items(a.items, b.items)
        out.append(
            SensitivityResult(f"wording {i + 1}", "wording", *overlap, r_a, r_b, exact, cfg.k)
        )
    return out


# --------------------------------------------------------------------------- report

_COLUMNS = ["model", "group", "perturbation", "mean Jaccard", "lo", "hi", "median", "identical",
            "mean shared items", "shared / K", "mean rank change", "target left list",
            "target entered list"]  # fmt: skip


def sensitivity_section(
    results: Mapping[str, Sequence[SensitivityResult]],
    out_dir: Path,
    n_boot: int = 1000,
    seed: int = 0,
) -> Section:
    """Table of every model × perturbation and a bar chart of mean Jaccard overlaps."""
    sec = Section("sensitivity", "Sensitivity to the user's history and to the task wording")
    rows, data = [], {}
    for model, res in results.items():
        for r in res:
            s = r.summary(n_boot, seed)
            data[f"{model}/{r.name}"] = s | {"exact_ranks": r.exact_ranks, "k": r.k}
            rows.append([model, r.group, r.name] + [round_cell(s.get(c)) for c in (
                "jaccard", "lo", "hi", "median_jaccard", "identical", "shared_items",
                "shared_share", "mean_rank_change", "target_left_list",
                "target_entered_list")])  # fmt: skip
    caption = ("Top-K overlap (Jaccard, 95% CI) between lists for the original and the perturbed "
               "input, and the mean number of items the two lists share (|A ∩ B|, and |A ∩ B| / K; "
               "Jaccard is not the share kept: two 10-item lists with Jaccard 0.33 share 5 "
               "items). History perturbations should lower it (1.0 = the model ignores the user's "
               "history); rewording the instruction should not (low = the model leans on the "
               "task text). Rank change: perturbed − original target rank (positive = worse; "
               "list ranks are censored at K unless the recommender has exact scores).")  # fmt: skip
    sec.tables.append(Table("sensitivity", caption, _COLUMNS, rows))
    sec.data["sensitivity"] = data
    sec.figures.append(_jaccard_figure(results, out_dir, n_boot, seed))
    return sec


def _jaccard_figure(results, out_dir: Path, n_boot: int, seed: int) -> Figure:
    plt = agg_pyplot()
    names = list(dict.fromkeys(r.name for res in results.values() for r in res))
    fig, ax = plt.subplots(figsize=(max(4, 0.9 * len(names) + 1), 3))
    width = 0.8 / max(len(results), 1)
    for m, (model, res) in enumerate(results.items()):
        by_name = {r.name: r.summary(n_boot, seed) for r in res}
        x = np.arange(len(names)) + m * width
        mean = np.array([by_name.get(n, {}).get("jaccard", np.nan) for n in names])
        lo = np.array([by_name.get(n, {}).get("lo", np.nan) for n in names])
        hi = np.array([by_name.get(n, {}).get("hi", np.nan) for n in names])
        ax.bar(x, mean, width, yerr=np.nan_to_num([mean - lo, hi - mean]), capsize=3, label=model)
    ax.set_xticks(np.arange(len(names)) + 0.4 - width / 2, names, rotation=30, ha="right")
    ax.set_ylim(0, 1.05)
    ax.set_ylabel("mean top-K Jaccard")
    ax.legend(fontsize=8)
    caption = ("Mean Jaccard overlap of top-K lists, original vs perturbed input. Bars near 1 for "
               "history perturbations mean the recommendations hardly depend on the user; bars "
               "well below 1 for rewordings mean they depend on the instruction text.")  # fmt: skip
    return Figure(save_figure(fig, out_dir, "sensitivity_jaccard"), caption)
