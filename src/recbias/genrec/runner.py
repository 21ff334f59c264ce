"""``run_genrec``: prepare data → semantic IDs → train → beam-search the test split → metrics.

    cfg = load_config(GenRecRunConfig, Path("configs/genrec_ml100k.toml"), overrides)
    result = run_genrec(cfg, run_dir)

Writes into ``run_dir`` (atomically): ``config.toml`` (resolved), ``environment.json``,
``codebook.json`` (encoder used, codebook usage per level, collisions), ``train_log.jsonl``,
``predictions/{split}.jsonl`` and ``metrics.json`` (HR/NDCG@K with bootstrap CIs, timings).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from recbias.config import write_resolved
from recbias.data.dataset import PreparedDataset
from recbias.data.prepare import prepare_dataset
from recbias.evaluation.predictions import write_predictions_jsonl
from recbias.fsutil import write_json, write_jsonl
from recbias.genrec.config import GenRecRunConfig
from recbias.genrec.recommender import GenerativeRecommender
from recbias.hardware import device_for, resolve_dtype
from recbias.metrics.stats import metrics_with_ci
from recbias.runs import seed_everything, set_threads, write_environment

log = logging.getLogger(__name__)


def _timed(timing: dict[str, float], name: str, t0: float) -> float:
    now = time.perf_counter()
    timing[name] = round(now - t0, 3)
    return now


# Called with the fitted recommender and the dataset after metrics.json is written (the audit).
AfterHook = Callable[[GenerativeRecommender, PreparedDataset], None]


def run_genrec(
    cfg: GenRecRunConfig, run_dir: Path, after: AfterHook | None = None
) -> dict[str, Any]:
    """Run one generative-recommender experiment; returns what ``metrics.json`` holds."""
    run_dir = Path(run_dir)
    seed_everything(cfg.genrec.seed)
    set_threads(cfg.threads)
    cfg.genrec.dtype = resolve_dtype(cfg.genrec.dtype, device_for(cfg.genrec.device))
    write_resolved(cfg, run_dir / "config.toml")
    write_environment(run_dir, cfg.genrec.seed, cfg.genrec.dtype)
    timing: dict[str, float] = {}
    t0 = time.perf_counter()
    ds = PreparedDataset.load(prepare_dataset(cfg.data))
    t0 = _timed(timing, "prepare", t0)
    rec = GenerativeRecommender(cfg.genrec)
    rec.fit(ds.split("train"), ds.items, ds.split("valid") if cfg.eval.split == "test" else None)
    t0 = _timed(timing, "fit", t0)
    write_json(run_dir / "codebook.json", {"encoder": rec.encoder_used, **rec.report})
    write_jsonl(run_dir / "train_log.jsonl", rec.train_log)
    samples = ds.split(cfg.eval.split)
    recs = rec.recommend(samples, max(cfg.eval.ks))
    t0 = _timed(timing, "recommend", t0)
    write_predictions_jsonl(
        run_dir / "predictions" / f"{cfg.eval.split}.jsonl", samples, recs, ds.titles
    )
    metrics = metrics_with_ci(
        recs.items, samples["target"].to_numpy(), cfg.eval.ks, cfg.eval.bootstrap, cfg.genrec.seed
    )
    result = {
        "method": "genrec",
        "dataset": ds.name,
        "split": cfg.eval.split,
        "encoder": rec.encoder_used,
        "metrics": metrics,
        "epochs_run": len(rec.train_log),
        "timing": timing,
    }
    write_json(run_dir / "metrics.json", result)
    if after is not None:
        after(rec, ds)
    log.info("genrec %s: %s", cfg.eval.split, {k: v for k, v in metrics.items() if "@10" in k})
    return result
