"""``recbias seqrec``: item-ID baselines on any dataset, with progress, resume and intervals.

    result = run_seqrec_dir(cfg, run_dir, resume=False, progress=print)

The data: ``cfg.data`` (the ``[data]`` section of ``recbias run``, any reader) gives the prepared
train/valid/test samples as they are; unset, RecBole's ML-100K leave-one-out protocol
(:mod:`recbias.evaluation.loo`). Run directory:

- ``models/<model>.json``, written atomically as soon as that model finishes: valid and test
  metrics, per-epoch loss, seconds and validation metric, the test ranks per sample (for the
  intervals) and ``config``, what the result depends on (the model's settings, the data, k, seed).
- ``metrics.json`` once every model is done: per model the test metrics with 95% bootstrap CIs
  over test samples, and paired tests (bootstrap CI of the difference, sign-flip p) of every model
  against ``cfg.reference``.

``resume=True`` reuses a model's file when its ``config`` equals the current one; a file made with
another config is a ConfigError naming the model and the first differing key.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from recbias.errors import ConfigError, DataError
from recbias.evaluation.loo import (
    LOOSplit,
    SeqRecConfig,
    apply_seed,
    full_ranks,
    load_ml100k_loo,
    run_model,
)
from recbias.fsutil import write_json
from recbias.metrics.ranking import ndcg
from recbias.metrics.stats import bootstrap_ci, paired_comparison

log = logging.getLogger(__name__)

Progress = Callable[[dict[str, Any]], None]
MODELS_DIR = "models"


def load_split(cfg: SeqRecConfig) -> LOOSplit:
    """The prepared ``[data]`` splits (item tokens = raw ids), or RecBole's ML-100K LOO."""
    if cfg.data is None:
        return load_ml100k_loo(max_len=cfg.max_len)
    from recbias.data import PreparedDataset, prepare_dataset

    ds = PreparedDataset.load(prepare_dataset(cfg.data))
    items = ds.items.drop(columns=["item", "raw_id"]).reset_index(drop=True)
    return LOOSplit(
        ds.split("train"),
        ds.split("valid"),
        ds.split("test"),
        ds.items["raw_id"].to_numpy(dtype=str),
        items,
    )


def model_config(cfg: SeqRecConfig, name: str) -> dict[str, Any]:
    """Everything a model's result depends on, as plain JSON values."""
    settings: Any = None
    if name in ("gru4rec", "sasrec"):
        settings = dataclasses.asdict(getattr(cfg.baselines, name))
    elif name == "genrec":
        settings = {**dataclasses.asdict(cfg.genrec), "train_samples": cfg.genrec_train_samples}
    data = dataclasses.asdict(cfg.data) if cfg.data is not None else "ml100k-loo"
    if isinstance(data, dict):
        data.pop("cache_dir", None)
    record = {"model": name, "settings": settings, "data": data, "k": cfg.k}
    record["max_len"] = cfg.max_len if cfg.data is None else None
    return json.loads(json.dumps(record, default=str))


def _first_difference(a: Any, b: Any, prefix: str = "") -> str:
    if isinstance(a, dict) and isinstance(b, dict):
        for key in sorted(set(a) | set(b)):
            if a.get(key) != b.get(key):
                return _first_difference(a.get(key), b.get(key), f"{prefix}.{key}".strip("."))
    return f"{prefix or 'config'}: {a!r} then, {b!r} now"


def _stored(path: Path, wanted: dict[str, Any]) -> dict[str, Any]:
    try:
        stored = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise DataError(f"{path}: unreadable model result ({exc}); delete it to rerun") from None
    if stored.get("config") != wanted:
        diff = _first_difference(stored.get("config"), wanted)
        raise ConfigError(
            f"--resume: {path} was made with another config ({diff}); delete it to rerun the "
            "model, or use a new run directory"
        )
    return stored


def check_resumable(cfg: SeqRecConfig, run_dir: Path) -> None:
    """ConfigError before anything runs when a stored model result has another config."""
    for name in cfg.models:
        path = Path(run_dir) / MODELS_DIR / f"{name}.json"
        if path.is_file():
            _stored(path, model_config(cfg, name))


def _as_numpy(scores: Any) -> np.ndarray:
    """Scores [n, n_items] as a float numpy array (torch tensors of any dtype included)."""
    return scores.float().numpy() if hasattr(scores, "numpy") else np.asarray(scores)


def _epoch_hook(name: str, cfg: SeqRecConfig, split: LOOSplit, progress: Progress) -> Any:
    """``on_epoch`` that reports loss, time, ETA and validation NDCG@k on a seeded subset."""
    valid = split.valid
    if cfg.epoch_valid_samples and len(valid) > cfg.epoch_valid_samples:
        valid = valid.sample(n=cfg.epoch_valid_samples, random_state=0)
    started = time.perf_counter()

    def on_epoch(epoch: int, model: Any) -> None:
        epochs = model.cfg.epochs
        event: dict[str, Any] = {"event": "epoch", "model": name, "epoch": epoch + 1}
        event |= {"epochs": epochs, "loss": model.losses[-1], "seconds": model.epoch_seconds[-1]}
        if cfg.epoch_valid_samples and len(valid):
            ranks = full_ranks(_as_numpy(model.scores(valid)), valid["target"].to_numpy())
            event[f"valid_NDCG@{cfg.k}"] = float(ndcg(ranks, cfg.k).mean())
        elapsed = time.perf_counter() - started
        event["eta_s"] = elapsed / (epoch + 1) * (epochs - epoch - 1)
        log.info("%s epoch %d/%d: %s", name, epoch + 1, epochs, event)
        progress(event)

    return on_epoch


def _intervals(cfg: SeqRecConfig, results: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Test metrics with 95% CIs per model and paired tests against the reference model."""
    k = cfg.k
    per: dict[str, dict[str, np.ndarray]] = {}
    for name, result in results.items():
        ranks = np.asarray(result["test_ranks"], dtype=np.int64)
        hit = (ranks < k).astype(np.float64)
        per[name] = {
            f"Hit@{k}": hit,
            f"NDCG@{k}": ndcg(ranks, k),
            f"MRR@{k}": np.where(ranks < k, 1.0 / (ranks + 1.0), 0.0),
        }
    models = {
        name: {m: bootstrap_ci(v, cfg.bootstrap, seed=cfg.seed or 0)._asdict()
               for m, v in metrics.items()}
        for name, metrics in per.items()
    }  # fmt: skip
    reference = cfg.reference or cfg.models[0]
    ids = {name: np.asarray(r["test_sample_ids"]) for name, r in results.items()}
    paired = {
        name: {
            m: dict(paired_comparison(per[name][m], per[reference][m], cfg.bootstrap,
                                      cfg.seed or 0, ids_a=ids[name], ids_b=ids[reference]))
            for m in per[name]
        }
        for name in per
        if name != reference
    }  # fmt: skip
    return {"k": k, "reference": reference, "test": models, f"paired_vs_{reference}": paired}


def _data_name(cfg: SeqRecConfig) -> str:
    if cfg.data is None:
        return "ml-100k (RecBole leave-one-out)"
    from recbias.data.config import resolve_data_config

    return str(resolve_data_config(cfg.data).source.name)


def run_seqrec_dir(
    cfg: SeqRecConfig, run_dir: Path, resume: bool = False, progress: Progress | None = None
) -> dict[str, Any]:
    """Run every model into ``run_dir`` (see module doc); returns the metrics.json content."""
    cfg.validate()
    apply_seed(cfg)
    if resume:
        check_resumable(cfg, run_dir)
    report = progress or (lambda event: None)
    split = load_split(cfg)
    results: dict[str, dict[str, Any]] = {}
    for name in cfg.models:
        path = Path(run_dir) / MODELS_DIR / f"{name}.json"
        wanted = model_config(cfg, name)
        if resume and path.is_file():
            results[name] = _stored(path, wanted)
            report({"event": "reused", "model": name, "path": str(path)})
            continue
        report({"event": "start", "model": name})
        result = run_model(name, cfg, split, _epoch_hook(name, cfg, split, report))
        results[name] = {**result, "config": wanted}
        write_json(path, results[name])
        report({"event": "done", "model": name, "test": result["test"], "path": str(path)})
    summary = {
        "data": _data_name(cfg),
        "samples": {p: len(getattr(split, p)) for p in ("train", "valid", "test")},
        "n_items": split.n_items,
        "models": {n: {k: r[k] for k in ("valid", "test", "epoch_seconds")}
                   for n, r in results.items()},
        **_intervals(cfg, results),
    }  # fmt: skip
    write_json(Path(run_dir) / "metrics.json", summary)
    return summary
