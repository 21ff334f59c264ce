"""``recbias audit RUN_DIR``: every bias measure of the papers on one trained run.

    from recbias.audit import AuditConfig, run_audit
    out = run_audit(Path("runs/quickstart"), AuditConfig(max_samples=50))
    # out/audit.json (sections for `recbias report`), out/figures/*.png, out/data/*.csv

Analyses, in report order (``AuditConfig.analyses`` / ``--only`` select them):

* ``fairness``: MGU/DGU@K per grouping (relevance, genre, popularity; pooled and per user),
  top-1 group shares vs target shares, and exposure concentration, for every predictions file;
* ``attribution``: feature-ablation attribution ratios of the tuned and the base model;
* ``cooccurrence``: context–target token co-occurrence in the training set;
* ``token_ig``: zero/low/high-IG token shares and losses, candidate entropy per decoding step;
* ``curves``: group-1 top-1 share and token-group losses over weight snapshots (if any);
* ``sensitivity``: top-K overlap under history perturbations and instruction rewordings.
"""

from recbias.audit.config import ANALYSES, AuditConfig, CurvesConfig, parse_only
from recbias.audit.run import AUDIT_FILE, headline, run_audit

__all__ = [
    "ANALYSES",
    "AUDIT_FILE",
    "AuditConfig",
    "CurvesConfig",
    "headline",
    "parse_only",
    "run_audit",
]
