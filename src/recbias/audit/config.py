"""Settings of ``recbias audit`` (``configs/audit.toml``; every key optional).

cfg = load_config(AuditConfig, Path("configs/audit.toml"), ["max_samples=50"])
cfg = AuditConfig()                      # the defaults
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from recbias.config import Config, invalid, spec
from recbias.diagnostics.attribution import AttributionConfig
from recbias.diagnostics.sensitivity import SensitivityConfig
from recbias.diagnostics.token_ig import TokenIGConfig
from recbias.errors import ConfigError
from recbias.metrics.fairness import GroupingKind

Analysis = Literal[
    "fairness", "attribution", "cooccurrence", "token_ig", "curves", "sensitivity", "positional"
]
ANALYSES: tuple[str, ...] = (
    "fairness",
    "attribution",
    "cooccurrence",
    "token_ig",
    "curves",
    "sensitivity",
    "positional",
)
SPLITS = ("train", "valid", "test")


@dataclass
class CurvesConfig(Config):
    """Training curves over weight snapshots (GDRT Figures 4, 6, 9)."""

    checkpoints: list[str] = field(
        default_factory=lambda: ["auto"],
        metadata={
            "help": "'auto' = the base model (step 0) and every checkpoints/epoch-* and step-* "
            "snapshot; or names such as base, epoch-1, step-50, best, last"
        },
    )
    max_prompts: int = field(
        default=100, metadata=spec("split samples whose top-1 recommendation is tracked", ge=1)
    )
    token_samples: int = field(
        default=200, metadata=spec("training samples whose target-token losses are tracked", ge=1)
    )
    token_groups: int = field(
        default=3, metadata=spec("token-relevance groups (GDRT Eq. 3) of the loss curves", ge=2)
    )
    grouping: Literal["kmeans", "quantile"] = field(
        default="quantile", metadata={"help": "how token relevance is cut into groups"}
    )
    top1: Literal["beam", "exact"] = field(
        default="beam",
        metadata={
            "help": "beam = the run's own constrained beam search with k=1 (fast); exact = "
            "score every candidate item by teacher forcing (slow on large catalogs)"
        },
    )

    def check(self) -> None:
        if not self.checkpoints or ("auto" in self.checkpoints and len(self.checkpoints) > 1):
            raise invalid("checkpoints", "must be ['auto'] or a list of names", self.checkpoints)


@dataclass
class AuditConfig(Config):
    """Every analysis of ``recbias audit`` and its settings."""

    split: Literal["train", "valid", "test"] = field(
        default="test", metadata={"help": "split whose predictions and samples are audited"}
    )
    ks: list[int] = field(
        default_factory=lambda: [5, 10],
        metadata=spec(
            "cut-offs K of the fairness and concentration metrics", ge=1, min_len=1, unique=True
        ),
    )
    groupings: list[GroupingKind] = field(
        default_factory=lambda: ["relevance", "genre", "popularity"],
        metadata={
            "help": "item groupings: relevance (GDRT Eq. 2, needs the LM), genre (skipped when "
            "the dataset has none), popularity (equal-size item groups by training "
            "interactions, ties by item id)",
            "min_len": 1,
            "unique": True,
        },
    )
    mode: Literal["both", "pooled", "per_user"] = field(
        default="both",
        metadata={"help": "MGU/DGU pooled over samples (SPRec), per_user (mean of gaps) or both"},
    )
    n_groups: int = field(default=5, metadata=spec("relevance and popularity groups", ge=2))
    relevance_model: Literal["base", "tuned"] = field(
        default="base",
        metadata={
            "help": "model that scores Eq. 2 relevance: base (the model before tuning, the same "
            "groups for every run of a comparison) or tuned"
        },
    )
    head_fraction: float = field(
        default=0.2, metadata=spec("share of most popular items that is the short head", gt=0, lt=1)
    )
    or_top: int = field(default=3, metadata=spec("most-recommended items counted by ORRatio", ge=1))
    batch_size: int = field(
        default=64, metadata=spec("titles (or samples) per forward pass of scoring passes", ge=1)
    )
    max_samples: int | None = field(
        default=None,
        metadata=spec("if set, caps the samples of every LM-heavy analysis (quick audits)", ge=1),
    )
    attribution_samples: int = field(
        default=200, metadata=spec("split samples attributed (GDRT Figures 2, 7)", ge=1)
    )
    sensitivity_samples: int = field(
        default=100, metadata=spec("split samples whose lists are perturbed", ge=1)
    )
    positional_samples: int = field(
        default=100, metadata=spec("split samples whose attention to history items is read", ge=1)
    )
    positional_window: int = field(
        default=2, metadata=spec("recent items counted as the near window (Prop. 4.1)", ge=1)
    )
    compare_base: bool = field(
        default=True,
        metadata={"help": "also attribute with the base model before tuning (Figure 2 vs 7)"},
    )
    analyses: list[Analysis] = field(
        default_factory=lambda: list(ANALYSES),
        metadata=spec("analyses to run, in report order", min_len=1, unique=True),
    )
    seed: int = field(default=0, metadata={"help": "seed of the sample subsets and bootstraps"})
    n_boot: int = field(default=1000, metadata=spec("bootstrap resamples of the CIs", ge=1))
    attribution: AttributionConfig = field(
        default_factory=AttributionConfig,
        metadata={"help": "feature-ablation attribution (analysis 'attribution')"},
    )
    sensitivity: SensitivityConfig = field(
        default_factory=SensitivityConfig,
        metadata={"help": "history and instruction perturbations (analysis 'sensitivity')"},
    )
    token_ig: TokenIGConfig = field(
        default_factory=TokenIGConfig,
        metadata={"help": "token-level information gain (analysis 'token_ig')"},
    )
    curves: CurvesConfig = field(
        default_factory=CurvesConfig,
        metadata={"help": "training curves over weight snapshots (analysis 'curves')"},
    )

    def limit(self, n: int) -> int:
        """``n`` capped by ``max_samples``."""
        return n if self.max_samples is None else min(n, self.max_samples)

    def selected(self) -> list[str]:
        """The selected analyses in report order."""
        return [a for a in ANALYSES if a in self.analyses]


def parse_only(text: str) -> list[str]:
    """``--only fairness,attribution`` -> names; an unknown name is an error listing the known."""
    names = [n.strip() for n in text.split(",") if n.strip()]
    bad = [n for n in names if n not in ANALYSES]
    if not names or bad:
        raise ConfigError(
            f"--only: unknown analyses {bad or text!r}; expected a comma-separated subset of "
            + ", ".join(ANALYSES)
        )
    return names
