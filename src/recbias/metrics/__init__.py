"""Evaluation metrics: numbers in, numbers out (no figures, no report sections).

``ranking`` (HR@K, NDCG@K) and ``stats`` (bootstrap CIs, paired tests) are re-exported here;
``fairness`` (MGU/DGU, top-1 group shares), ``concentration`` (Gini, HHI, coverage, ...) and
``overlap`` (Jaccard of top-K lists) are imported from their modules. The audit renders them
(:mod:`recbias.audit.fairness_sections`).
"""

from recbias.metrics.ranking import (
    DEFAULT_KS,
    hit_rate,
    ndcg,
    per_sample_metrics,
    ranking_metrics,
    target_ranks,
    valid_ratio,
)
from recbias.metrics.stats import (
    BootstrapCI,
    PairedComparison,
    align_sample_ids,
    bootstrap_ci,
    metrics_with_ci,
    paired_comparison,
    sign_flip_p_value,
)

__all__ = [
    "DEFAULT_KS",
    "BootstrapCI",
    "PairedComparison",
    "align_sample_ids",
    "bootstrap_ci",
    "hit_rate",
    "metrics_with_ci",
    "ndcg",
    "paired_comparison",
    "per_sample_metrics",
    "ranking_metrics",
    "sign_flip_p_value",
    "target_ranks",
    "valid_ratio",
]
