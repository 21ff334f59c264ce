"""Settings of ``recbias audit`` (``configs/audit.toml``; every key optional).

cfg = load_config(AuditConfig, Path("configs/audit.toml"), ["max_samples=50"])
cfg = AuditConfig()                      # the defaults
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from recbias.diagnostics.attribution import AttributionConfig
from recbias.diagnostics.sensitivity import SensitivityConfig
from recbias.diagnostics.token_ig import TokenIGConfig
from recbias.errors import ConfigError
from recbias.metrics.fairness import GroupingKind

Analysis = Literal["fairness", "attribution", "cooccurrence", "token_ig", "curves", "sensitivity"]
ANALYSES: tuple[str, ...] = (
    "fairness",
    "attribution",
    "cooccurrence",
    "token_ig",
    "curves",
    "sensitivity",
)
SPLITS = ("train", "valid", "test")


def _fail(key: str, need: str, value: object) -> ConfigError:
    return ConfigError(f"config key '{key}': {need}, got {value!r}")


@dataclass
class CurvesConfig:
    """Training curves over weight snapshots (GDRT Figures 4, 6, 9)."""

    checkpoints: list[str] = field(
        default_factory=lambda: ["auto"],
        metadata={
            "help": "'auto' = the base model (step 0) and every checkpoints/epoch-* and step-* "
            "snapshot; or names such as base, epoch-1, step-50, best, last"
        },
    )
    max_prompts: int = field(
        default=100, metadata={"help": "split samples whose top-1 recommendation is tracked"}
    )
    token_samples: int = field(
        default=200, metadata={"help": "training samples whose target-token losses are tracked"}
    )
    token_groups: int = field(
        default=3, metadata={"help": "token-relevance groups (GDRT Eq. 3) of the loss curves"}
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

    def validate(self) -> None:
        if not self.checkpoints or ("auto" in self.checkpoints and len(self.checkpoints) > 1):
            raise _fail(
                "curves.checkpoints", "must be ['auto'] or a list of names", self.checkpoints
            )
        for key in ("max_prompts", "token_samples"):
            if getattr(self, key) < 1:
                raise _fail(f"curves.{key}", "must be >= 1", getattr(self, key))
        if self.token_groups < 2:
            raise _fail("curves.token_groups", "must be >= 2", self.token_groups)


@dataclass
class AuditConfig:
    """Every analysis of ``recbias audit`` and its settings."""

    split: Literal["train", "valid", "test"] = field(
        default="test", metadata={"help": "split whose predictions and samples are audited"}
    )
    ks: list[int] = field(
        default_factory=lambda: [5, 10],
        metadata={"help": "cut-offs K of the fairness and concentration metrics"},
    )
    groupings: list[GroupingKind] = field(
        default_factory=lambda: ["relevance", "genre", "popularity"],
        metadata={
            "help": "item groupings: relevance (GDRT Eq. 2, needs the LM), genre (skipped when "
            "the dataset has none), popularity (training-count quantiles)"
        },
    )
    mode: Literal["both", "pooled", "per_user"] = field(
        default="both",
        metadata={"help": "MGU/DGU pooled over samples (SPRec), per_user (mean of gaps) or both"},
    )
    n_groups: int = field(default=5, metadata={"help": "relevance and popularity groups"})
    relevance_model: Literal["base", "tuned"] = field(
        default="base",
        metadata={
            "help": "model that scores Eq. 2 relevance: base (the model before tuning, the same "
            "groups for every run of a comparison) or tuned"
        },
    )
    head_fraction: float = field(
        default=0.2, metadata={"help": "share of most popular items that is the short head"}
    )
    or_top: int = field(default=3, metadata={"help": "most-recommended items counted by ORRatio"})
    batch_size: int = field(
        default=64, metadata={"help": "titles (or samples) per forward pass of scoring passes"}
    )
    max_samples: int | None = field(
        default=None,
        metadata={"help": "if set, caps the samples of every LM-heavy analysis (quick audits)"},
    )
    attribution_samples: int = field(
        default=200, metadata={"help": "split samples attributed (GDRT Figures 2, 7)"}
    )
    sensitivity_samples: int = field(
        default=100, metadata={"help": "split samples whose lists are perturbed"}
    )
    compare_base: bool = field(
        default=True,
        metadata={"help": "also attribute with the base model before tuning (Figure 2 vs 7)"},
    )
    analyses: list[Analysis] = field(
        default_factory=lambda: list(ANALYSES),
        metadata={"help": "analyses to run, in report order: " + ", ".join(ANALYSES)},
    )
    seed: int = field(default=0, metadata={"help": "seed of the sample subsets and bootstraps"})
    n_boot: int = field(default=1000, metadata={"help": "bootstrap resamples of the CIs"})
    attribution: AttributionConfig = field(default_factory=AttributionConfig)
    sensitivity: SensitivityConfig = field(default_factory=SensitivityConfig)
    token_ig: TokenIGConfig = field(default_factory=TokenIGConfig)
    curves: CurvesConfig = field(default_factory=CurvesConfig)

    def validate(self) -> None:
        if not self.ks or min(self.ks) < 1 or len(set(self.ks)) != len(self.ks):
            raise _fail("ks", "must be distinct integers >= 1", self.ks)
        if not self.groupings or len(set(self.groupings)) != len(self.groupings):
            raise _fail("groupings", "must be a non-empty list without repeats", self.groupings)
        if not self.analyses or len(set(self.analyses)) != len(self.analyses):
            raise _fail("analyses", "must be a non-empty list without repeats", self.analyses)
        checks = [
            ("n_groups", self.n_groups >= 2, "must be >= 2"),
            ("head_fraction", 0 < self.head_fraction < 1, "must be in (0, 1)"),
            ("or_top", self.or_top >= 1, "must be >= 1"),
            ("batch_size", self.batch_size >= 1, "must be >= 1"),
            ("max_samples", self.max_samples is None or self.max_samples >= 1, "must be >= 1"),
            ("attribution_samples", self.attribution_samples >= 1, "must be >= 1"),
            ("sensitivity_samples", self.sensitivity_samples >= 1, "must be >= 1"),
            ("n_boot", self.n_boot >= 1, "must be >= 1"),
        ]
        for key, ok, need in checks:
            if not ok:
                raise _fail(key, need, getattr(self, key))

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
