"""What an audit reads from a run directory: its config, dataset, models and predictions.

    ctx = AuditContext.open(Path("runs/quickstart"), AuditConfig())
    ctx.tuned()            # LoadedModel with the run's trained weights (loaded once)
    ctx.base()             # the model the run started from (loaded once)
    ctx.predictions()      # {"llm": StoredPredictions, "popularity": ...}, checked against the split

Every problem with the run is a :mod:`recbias.errors` exception naming the path or field.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from recbias.audit.config import AuditConfig
from recbias.baselines.popularity import count_items
from recbias.config import load_recorded
from recbias.data.dataset import PreparedDataset
from recbias.errors import ConfigError, DataError, ModelError
from recbias.evaluation.predictions import StoredPredictions, read_predictions_jsonl
from recbias.experiment import RunConfig
from recbias.lm import loading
from recbias.pipeline import LoadedModel, load_data, load_lm, trained_weights
from recbias.prompts import PromptBuilder

log = logging.getLogger(__name__)


def read_run_config(run_dir: Path) -> RunConfig:
    """The resolved ``config.toml`` of a run; errors say the directory is not a run."""
    if not run_dir.is_dir():
        raise DataError(f"run directory '{run_dir}': no such directory")
    path = run_dir / "config.toml"
    if not path.is_file():
        raise DataError(
            f"'{run_dir}' is not a recbias run directory: no config.toml "
            "(expected the directory written by `recbias run` or `recbias train`)"
        )
    try:
        return load_recorded(RunConfig, path)
    except ConfigError as exc:
        raise ConfigError(f"run directory '{run_dir}': {exc}") from None


@dataclass
class AuditContext:
    """A run opened for auditing; models and derived arrays are loaded on first use."""

    run_dir: Path
    cfg: AuditConfig
    run_cfg: RunConfig
    ds: PreparedDataset
    cache: dict[str, Any] = field(default_factory=dict, repr=False)
    _models: dict[str, LoadedModel] = field(default_factory=dict, repr=False)

    @classmethod
    def open(cls, run_dir: Path, cfg: AuditConfig) -> AuditContext:
        run_cfg = read_run_config(Path(run_dir))
        return cls(Path(run_dir), cfg, run_cfg, load_data(run_cfg))

    # ------------------------------------------------------------------ data

    @property
    def titles(self) -> list[str]:
        return self.ds.titles

    @property
    def n_items(self) -> int:
        return len(self.ds.titles)

    @cached_property
    def samples(self) -> pd.DataFrame:
        """The audited split."""
        frame = self.ds.split(self.cfg.split)
        if frame.empty:
            raise DataError(f"dataset '{self.ds.path}': split '{self.cfg.split}' has no samples")
        return frame

    @cached_property
    def train_counts(self) -> np.ndarray:
        """``[n_items]`` training-target counts (popularity)."""
        return count_items(self.ds.split("train"), self.n_items)

    def subset(self, n: int) -> pd.DataFrame:
        """A seeded random subset of ``n`` split samples (capped by ``max_samples``), in split
        order; a smaller subset is a prefix of a larger one's draw."""
        n = min(self.cfg.limit(n), len(self.samples))
        order = np.random.default_rng(self.cfg.seed).permutation(len(self.samples))[:n]
        return self.samples.iloc[np.sort(order)].reset_index(drop=True)

    # ------------------------------------------------------------------ models

    def tuned(self) -> LoadedModel:
        """The run's trained model (``model/`` or ``adapter/``); missing = error naming it."""
        if "tuned" not in self._models:
            weights = trained_weights(self.run_cfg, self.run_dir)
            self._models["tuned"] = self._load(weights)
        return self._models["tuned"]

    def base(self) -> LoadedModel:
        """The model the run started from (fresh LoRA adapters are the identity)."""
        if "base" not in self._models:
            self._models["base"] = self._load(None)
        return self._models["base"]

    def take_base(self) -> LoadedModel:
        """The base model for in-place weight loading; later ``base()`` calls reload it."""
        lm = self.base()
        del self._models["base"]
        return lm

    def _load(self, weights: Path | None) -> LoadedModel:
        try:
            lm = load_lm(self.run_cfg, self.ds, weights)
        except OSError as exc:
            what = weights or self.run_cfg.model.path or "the packaged base model"
            raise ModelError(f"cannot load the model from '{what}': {exc}") from None
        lm.model.eval()
        return lm

    def tokenizer_builder(self) -> PromptBuilder:
        """The run's prompt builder, without loading a model if none is loaded yet."""
        if self._models:
            return next(iter(self._models.values())).builder
        tok = loading.load_tokenizer(loading.resolve_path(self.run_cfg.model))
        return PromptBuilder(tok, self.run_cfg.prompt, self.ds.domain)

    def checkpoint_dir(self, name: str) -> Path:
        """``RUN/checkpoints/NAME`` holding ``weights.pt``; missing = error naming the path."""
        path = self.run_dir / "checkpoints" / name / "weights.pt"
        if not path.is_file():
            raise ModelError(f"checkpoint '{name}': {path} does not exist")
        return path.parent

    # ------------------------------------------------------------------ predictions

    def predictions(self) -> dict[str, StoredPredictions]:
        """Every ``predictions/*.jsonl`` of the run, checked against the split and catalog."""
        folder = self.run_dir / "predictions"
        files = sorted(folder.glob("*.jsonl")) if folder.is_dir() else []
        if not files:
            raise DataError(
                f"run directory '{self.run_dir}': no predictions/*.jsonl "
                "(run `recbias recommend` first)"
            )
        return {path.stem: self._checked(path) for path in files}

    def _checked(self, path: Path) -> StoredPredictions:
        pred = read_predictions_jsonl(path)
        if len(pred.sample_ids) == 0:
            raise DataError(f"{path}: no predictions")
        known = self.samples.set_index("sample_id")["target"]
        missing = ~np.isin(pred.sample_ids, known.index.to_numpy())
        if missing.any():
            raise DataError(
                f"{path}: field 'sample_id' holds {int(missing.sum())} ids not in the "
                f"'{self.cfg.split}' split (e.g. {int(pred.sample_ids[missing][0])}); "
                "predictions of another dataset or split?"
            )
        bad = known.loc[pred.sample_ids].to_numpy() != pred.targets
        if bad.any():
            sid = int(pred.sample_ids[bad][0])
            raise DataError(
                f"{path}: field 'target' of sample {sid} differs from the '{self.cfg.split}' split "
                "(predictions of another dataset?)"
            )
        items = pred.items
        if items.size and items.max() >= self.n_items:
            raise DataError(
                f"{path}: field 'items' holds item id {int(items.max())}, outside the catalog of "
                f"{self.n_items} items (predictions of another dataset?)"
            )
        return pred

    def histories(self, sample_ids: np.ndarray) -> list[list[int]]:
        """Histories of the split samples ``sample_ids``, in that order."""
        hist = self.samples.set_index("sample_id")["history"]
        return [[int(i) for i in h] for h in hist.loc[sample_ids]]
