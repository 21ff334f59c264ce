"""What an audit reads from a loaded run (:class:`recbias.llmrec.LoadedRun`): its config,
dataset, models and predictions.

    ctx = AuditContext.open(Path("runs/quickstart"), AuditConfig())
    ctx = AuditContext(LoadedRun.open(run_dir), AuditConfig())   # the same
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
from recbias.data.dataset import PreparedDataset
from recbias.errors import DataError
from recbias.evaluation.predictions import StoredPredictions, read_predictions_jsonl
from recbias.llmrec import LoadedModel, LoadedRun, RunConfig
from recbias.prompts import PromptBuilder

log = logging.getLogger(__name__)


@dataclass
class AuditContext:
    """A loaded run plus the audit settings; derived arrays are computed on first use."""

    run: LoadedRun
    cfg: AuditConfig
    cache: dict[str, Any] = field(default_factory=dict, repr=False)

    @classmethod
    def open(cls, run_dir: Path, cfg: AuditConfig) -> AuditContext:
        return cls(LoadedRun.open(Path(run_dir)), cfg)

    @property
    def run_dir(self) -> Path:
        return self.run.run_dir

    @property
    def run_cfg(self) -> RunConfig:
        return self.run.cfg

    @property
    def ds(self) -> PreparedDataset:
        return self.run.ds

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
        """``[n_items]`` counts of the (sampled) training targets the model was trained on:
        information gain (IGD's tree counts the training targets)."""
        return count_items(self.ds.split("train"), self.n_items)

    @cached_property
    def popularity(self) -> np.ndarray:
        """``[n_items]`` training interactions before subsampling: the popularity groups and
        the concentration's short head."""
        return self.ds.train_popularity()

    def subset(self, n: int) -> pd.DataFrame:
        """A seeded random subset of ``n`` split samples (capped by ``max_samples``), in split
        order; a smaller subset is a prefix of a larger one's draw."""
        n = min(self.cfg.limit(n), len(self.samples))
        order = np.random.default_rng(self.cfg.seed).permutation(len(self.samples))[:n]
        return self.samples.iloc[np.sort(order)].reset_index(drop=True)

    # ------------------------------------------------------------------ models

    def tuned(self) -> LoadedModel:
        return self.run.tuned()

    def base(self) -> LoadedModel:
        return self.run.base()

    def take_base(self) -> LoadedModel:
        return self.run.take_base()

    def tokenizer_builder(self) -> PromptBuilder:
        return self.run.tokenizer_builder()

    def checkpoint_dir(self, name: str) -> Path:
        return self.run.checkpoint_dir(name)

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
