"""Trained models for the probes: the prepared dataset and fitted genrec / SASRec / popularity.

``recbias.genrec`` is imported lazily so that the isolated-head probes run without it.

    ds = load_dataset(cfg.data)
    model = fit_scorer(cfg.model, ds)                         # has scores(samples)
    factory = genrec_factory(cfg.model, ds)                   # m -> fitted ALiBi genrec
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Self

import numpy as np
import pandas as pd

from recbias.baselines.popularity import count_items
from recbias.baselines.sasrec import SASRecRecommender, top_k
from recbias.config import from_dict
from recbias.data.config import DataConfig
from recbias.data.dataset import PreparedDataset
from recbias.errors import ConfigError, RecbiasError
from recbias.evaluation.predictions import Recommendations
from recbias.probes.config import ProbeModelConfig

logger = logging.getLogger(__name__)


def load_dataset(cfg: DataConfig) -> PreparedDataset:
    from recbias.data.prepare import prepare_dataset

    return PreparedDataset.load(prepare_dataset(cfg))


def probe_samples(ds: PreparedDataset, n: int) -> pd.DataFrame:
    """The first ``n`` test samples (the probe's evaluation set)."""
    return ds.split("test").head(n).reset_index(drop=True)


def genrec_available() -> str | None:
    """None when ``recbias.genrec`` imports, else the reason it does not."""
    try:
        import recbias.genrec.config
        import recbias.genrec.recommender  # noqa: F401
    except ImportError as exc:
        return f"recbias.genrec is not importable ({exc})"
    return None


def fit_genrec(model: ProbeModelConfig, ds: PreparedDataset, **overrides: Any) -> Any:
    """A GenerativeRecommender built from ``model.genrec`` (+ overrides), fitted on ``ds``."""
    reason = genrec_available()
    if reason is not None:
        raise ConfigError(f"config key 'model.kind': 'genrec' needs {reason}")
    from recbias.genrec.config import GenRecConfig
    from recbias.genrec.recommender import GenerativeRecommender

    cfg = from_dict(GenRecConfig, {**model.genrec, **overrides}, "model.genrec")
    return GenerativeRecommender(cfg).fit(ds.split("train"), ds.items, ds.split("valid"))


def genrec_factory(model: ProbeModelConfig, ds: PreparedDataset) -> Callable[[float], Any]:
    """m -> GenerativeRecommender with ALiBi of strength m, fitted on ``ds``."""
    return lambda m: fit_genrec(model, ds, position="alibi", alibi_m=float(m))


@dataclass
class PopularityScorer:
    """Popularity as an exact scorer: log p(i) = log((count_i + 1) / (total + n_items))."""

    name: str = "popularity"
    log_probs: np.ndarray | None = field(default=None, init=False, repr=False)

    def fit(self, train: pd.DataFrame, n_items: int) -> Self:
        counts = count_items(train, n_items, "targets").astype(np.float64) + 1.0
        self.log_probs = np.log(counts / counts.sum())
        return self

    def scores(self, samples: pd.DataFrame) -> np.ndarray:
        if self.log_probs is None:
            raise RecbiasError("popularity scorer: call fit() before scores()")
        return np.tile(self.log_probs, (len(samples), 1))  # [n, n_items]

    def recommend(self, samples: pd.DataFrame, k: int) -> Recommendations:
        items, values = top_k(self.scores(samples), k)
        return Recommendations(items, values, samples["sample_id"].to_numpy())


def fit_scorer(model: ProbeModelConfig, ds: PreparedDataset) -> Any:
    """The fitted model of ``model.kind`` (genrec, sasrec or popularity)."""
    n_items = len(ds.items)
    if model.kind == "genrec":
        return fit_genrec(model, ds)
    if model.kind == "sasrec":
        return SASRecRecommender(model.sasrec).fit(ds.split("train"), n_items=n_items)
    if model.kind == "popularity":
        return PopularityScorer().fit(ds.split("train"), n_items)
    raise ConfigError(f"config key 'model.kind': no trained model for {model.kind!r}")


def item_codes(model: Any) -> np.ndarray | None:
    """Semantic IDs [n_items, levels] (``item_codes`` or genrec's ``codes``); None for item-ID models."""
    for name in ("item_codes", "codes"):
        codes = getattr(model, name, None)
        if codes is None:
            continue
        codes = codes.detach().cpu().numpy() if hasattr(codes, "detach") else np.asarray(codes)
        if codes.ndim == 2 and codes.shape[0] == getattr(model, "n_items", codes.shape[0]):
            return codes.astype(np.int64)
    return None
