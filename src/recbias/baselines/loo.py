"""Chronological leave-one-out with full ranking: RecBole 1.2.1's sequential protocol, rebuilt.

What RecBole does for a sequential model with its ML-100K quick-start settings
(``eval_args: {split: {LS: valid_and_test}, order: TO, mode: full}``, ``MAX_ITEM_LIST_LENGTH 50``,
no rating threshold, no k-core filtering; read from ``sequential_dataset.py``, ``dataset.py``,
``general_dataloader.py``, ``trainer.py`` and ``evaluator/`` of the 1.2.1 wheel), and what this
module does the same way:

1. **Augmentation before splitting.** Interactions are sorted by (user, timestamp) with stable
   sorts, so equal timestamps keep the order of the input file. Every interaction but a user's
   first becomes one sample: history = the up to ``max_len`` interactions before it (oldest
   first), target = its item.
2. **Split per user on those samples**, in time order: the last sample is test, the one before it
   valid, the rest train. A user with n interactions has n − 1 samples; RecBole leaves
   ``min(2, n − 2)`` of them out, so n = 3 gives 1 train + 1 test (no valid), n = 2 gives 1 train
   sample, n = 1 nothing. (ML-100K users all have ≥ 20 ratings.) The test history therefore ends
   with the valid target.
3. **Full ranking** over every item of the catalog (the items that occur in the interactions;
   RecBole's padding id 0 is excluded). Sequential models get **no history masking**: items the
   user has already seen stay rankable (RecBole masks them only for general recommenders).
4. Metrics ``Recall/MRR/NDCG/Hit/Precision@10``, averaged over the evaluated samples (one per
   user); with one target per sample Recall@k = Hit@k and Precision@k = Hit@k / k. RecBole picks
   the top k with ``torch.topk`` (tie order unspecified); here a tied item with a smaller id ranks
   first, as in :func:`recbias.baselines.seqtrain.top_k`. ``valid_metric`` is MRR@10.

Item ids are 0-based in order of first appearance in the file (RecBole: 1-based, same order).

    cfg = load_config(SeqRecConfig, Path("configs/seqrec_ml100k.toml"))
    results = run_seqrec(cfg, load_ml100k_loo(max_len=cfg.max_len))  # {model: {valid, test, ...}}

    split = load_ml100k_loo()                     # LOOSplit(train, valid, test, n_items, ...)
    model = GRU4RecRecommender(cfg).fit(split.train, n_items=split.n_items)
    full_ranking_metrics(model.scores(split.test), split.test["target"].to_numpy())
    # {'Recall@10': 0.11, 'MRR@10': 0.04, 'NDCG@10': 0.05, 'Hit@10': 0.11, 'Precision@10': 0.011}
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from recbias.baselines.gru4rec import GRU4RecConfig, GRU4RecRecommender
from recbias.baselines.popularity import count_items
from recbias.baselines.sasrec import SASRecConfig, SASRecRecommender
from recbias.config import Config, invalid, spec
from recbias.data.config import DataConfig
from recbias.errors import DataError
from recbias.genrec.config import GenRecConfig
from recbias.metrics.ranking import hit_rate, ndcg

log = logging.getLogger(__name__)

INTER_COLUMNS = {"user": "user_id:token", "item": "item_id:token", "timestamp": "timestamp:float"}


@dataclass(frozen=True)
class LOOSplit:
    """Samples in recbias' split format (``sample_id, user, history, target, timestamp``).

    ``item_tokens[i]`` is the file's item id for our item id ``i``; ``n_items`` = its length.
    ``items`` (optional) holds ``title``, ``year``, ``genres`` per our item id, for text-based
    models (the semantic IDs of genrec).
    """

    train: pd.DataFrame
    valid: pd.DataFrame
    test: pd.DataFrame
    item_tokens: np.ndarray
    items: pd.DataFrame | None = None

    @property
    def n_items(self) -> int:
        return len(self.item_tokens)


def _read_atomic(path: Path, what: str, columns: list[str]) -> pd.DataFrame:
    """A RecBole atomic file as strings, in file order; it must hold ``columns``."""
    if not path.is_file():
        raise DataError(f"{path}: {what} file not found")
    frame = pd.read_csv(path, sep="\t", dtype=str, keep_default_na=False)
    missing = [name for name in columns if name not in frame.columns]
    if missing:
        raise DataError(
            f"{path}: missing columns {missing}; columns present: {', '.join(frame.columns)}"
        )
    return frame


def read_atomic_inter(path: str | Path) -> pd.DataFrame:
    """A RecBole ``.inter`` file -> ``user`` str, ``item`` str, ``timestamp`` int64, file order."""
    path = Path(path)
    frame = _read_atomic(path, "interactions", list(INTER_COLUMNS.values()))
    times = pd.to_numeric(frame[INTER_COLUMNS["timestamp"]], errors="coerce")
    if times.isna().any():
        row = int(np.flatnonzero(times.isna().to_numpy())[0]) + 2  # header is line 1
        raise DataError(f"{path}: line {row}: field 'timestamp:float' is not a number")
    return pd.DataFrame(
        {
            "user": frame[INTER_COLUMNS["user"]].to_numpy(),
            "item": frame[INTER_COLUMNS["item"]].to_numpy(),
            "timestamp": times.to_numpy().astype(np.int64),
        }
    )


def _augment(users: np.ndarray, items: np.ndarray, times: np.ndarray, max_len: int) -> list:
    """One (user, history, target, time) per interaction that has a predecessor of its user."""
    rows = []
    start = 0
    for i in range(len(users)):
        if i == 0 or users[i] != users[i - 1]:
            start = i
            continue
        lo = max(start, i - max_len)
        rows.append((users[i], items[lo:i].tolist(), int(items[i]), int(times[i])))
    return rows


def _split_role(samples: pd.DataFrame) -> np.ndarray:
    """'train' / 'valid' / 'test' per sample; samples are grouped by user in time order."""
    count = samples.groupby("user", sort=False)["user"].transform("size").to_numpy()
    from_end = count - 1 - samples.groupby("user", sort=False).cumcount().to_numpy()
    left_out = np.minimum(2, count - 1)  # RecBole: min(leave_one_num, samples - 1)
    role = np.full(len(samples), "train", dtype=object)
    role[(from_end == 0) & (left_out >= 1)] = "test"
    role[(from_end == 1) & (left_out >= 2)] = "valid"
    return role


def leave_one_out(interactions: pd.DataFrame, max_len: int = 50) -> LOOSplit:
    """Chronological leave-one-out samples from ``user, item, timestamp`` rows (see module doc)."""
    if max_len < 1:
        raise ValueError(f"max_len must be >= 1, got {max_len}")
    missing = {"user", "item", "timestamp"} - set(interactions.columns)
    if missing:
        raise DataError(f"interactions: missing columns {sorted(missing)}")
    codes, tokens = pd.factorize(interactions["item"], sort=False)  # first appearance order
    order = np.lexsort((np.arange(len(interactions)), interactions["timestamp"].to_numpy()))
    users = interactions["user"].to_numpy()[order]
    order = order[np.argsort(pd.factorize(users)[0], kind="stable")]  # group users, keep time
    rows = _augment(
        interactions["user"].to_numpy()[order],
        codes[order].astype(np.int64),
        interactions["timestamp"].to_numpy()[order],
        max_len,
    )
    samples = pd.DataFrame(rows, columns=["user", "history", "target", "timestamp"])
    samples.insert(0, "sample_id", np.arange(len(samples), dtype=np.int64))
    role = _split_role(samples)
    parts = {r: samples[role == r].reset_index(drop=True) for r in ("train", "valid", "test")}
    log.info("leave-one-out: %s samples", {r: len(p) for r, p in parts.items()})
    return LOOSplit(parts["train"], parts["valid"], parts["test"], np.asarray(tokens, dtype=str))


def load_ml100k_loo(cache_dir: str | Path | None = None, max_len: int = 50) -> LOOSplit:
    """RecBole's ML-100K (from the recbole wheel, see :mod:`recbias.data.embedded`) split by LOO."""
    from recbias.assets import default_cache_dir
    from recbias.data.embedded import ensure_ml100k

    directory = ensure_ml100k(cache_dir or default_cache_dir())
    split = leave_one_out(read_atomic_inter(directory / "ml-100k.inter"), max_len)
    items = read_atomic_items(directory / "ml-100k.item", split.item_tokens)
    return dataclasses.replace(split, items=items)


ITEM_COLUMNS = {
    "item": "item_id:token",
    "title": "movie_title:token_seq",
    "year": "release_year:token",
    "genres": "class:token_seq",
}


def read_atomic_items(path: str | Path, item_tokens: np.ndarray) -> pd.DataFrame:
    """A RecBole ``.item`` file -> ``title``, ``year``, ``genres`` (list) per our item id."""
    path = Path(path)
    frame = _read_atomic(path, "item", list(ITEM_COLUMNS.values()))
    by_token = frame.set_index(ITEM_COLUMNS["item"])
    absent = [str(t) for t in item_tokens if t not in by_token.index]
    if absent:
        raise DataError(f"{path}: no row for item ids {absent[:5]} of the interactions")
    rows = by_token.loc[list(item_tokens)]
    return pd.DataFrame(
        {
            "title": rows[ITEM_COLUMNS["title"]].to_numpy(),
            "year": rows[ITEM_COLUMNS["year"]].to_numpy(),
            "genres": [g.split() for g in rows[ITEM_COLUMNS["genres"]]],
        }
    )


def full_ranks(scores: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """0-based rank of each target among all items. scores: [n, n_items], targets: [n] -> [n].

    rank = #items scoring higher + #items scoring the same with a smaller id.
    """
    scores = np.asarray(scores)
    targets = np.asarray(targets, dtype=np.int64)
    if scores.ndim != 2 or targets.shape != (scores.shape[0],):
        raise ValueError(f"expected scores [n, n_items] and targets [n], got {scores.shape}")
    target_score = scores[np.arange(len(targets)), targets][:, None]
    smaller_id = np.arange(scores.shape[1])[None, :] < targets[:, None]
    ahead = (scores > target_score) | ((scores == target_score) & smaller_id)
    return ahead.sum(axis=1).astype(np.int64)


def full_ranking_metrics(scores: np.ndarray, targets: np.ndarray, k: int = 10) -> dict[str, float]:
    """RecBole's ``Recall/MRR/NDCG/Hit/Precision@k`` with one target per row, means over rows."""
    ranks = full_ranks(scores, targets)
    hit = hit_rate(ranks, k)
    return {
        f"Recall@{k}": float(hit.mean()),
        f"MRR@{k}": float(np.where(ranks < k, 1.0 / (ranks + 1.0), 0.0).mean()),
        f"NDCG@{k}": float(ndcg(ranks, k).mean()),
        f"Hit@{k}": float(hit.mean()),
        f"Precision@{k}": float(hit.mean() / k),
    }


SEQ_MODELS = ("popularity", "gru4rec", "sasrec", "genrec")


@dataclass
class SeqBaselines(Config):
    gru4rec: GRU4RecConfig = field(
        default_factory=lambda: GRU4RecConfig(batch_size=2048),
        metadata={"help": "GRU4Rec (model 'gru4rec')"},
    )
    sasrec: SASRecConfig = field(
        default_factory=lambda: SASRecConfig(max_len=50, batch_size=2048, ffn=256, dropout=0.5),
        metadata={"help": "SASRec (model 'sasrec')"},
    )


@dataclass
class SeqRecConfig(Config):
    """Item-ID baselines on chronological leave-one-out with full ranking."""

    name: str = field(default="seqrec", metadata={"help": "run name (prefix of the run dir)"})
    output_dir: str = field(default="runs", metadata={"help": "where run directories are created"})
    seed: int | None = field(
        default=None,
        metadata={"help": "seed of every model (overrides baselines.*.seed when set)"},
    )
    models: list[str] = field(
        default_factory=lambda: ["popularity", "gru4rec", "sasrec"],
        metadata=spec("models to train and evaluate", choices=SEQ_MODELS, min_len=1),
    )
    genrec: GenRecConfig = field(
        default_factory=GenRecConfig,
        metadata={"help": "the semantic-ID generative recommender (model 'genrec')"},
    )
    genrec_train_samples: int | None = field(
        default=20000,
        metadata={
            "help": "genrec trains on this many training samples drawn with `seed` "
            "(unset = all); its exact scoring of every item is what full ranking needs",
            "ge": 1,
        },
    )
    data: DataConfig | None = field(
        default=None,
        metadata={
            "help": "the dataset, the [data] section of `recbias run` (any reader); its prepared "
            "train/valid/test samples are used as they are. Unset = RecBole's ML-100K "
            "leave-one-out protocol (module doc)"
        },
    )
    max_len: int = field(default=50, metadata=spec("LOO history window (RecBole: 50)", ge=1))
    k: int = field(default=10, metadata=spec("cut-off of the ranking metrics", ge=1))
    bootstrap: int = field(
        default=1000, metadata=spec("bootstrap resamples of the 95% CIs and paired tests", ge=1)
    )
    reference: str | None = field(
        default=None,
        metadata={"help": "model the others are compared with (paired tests); unset = the first"},
    )
    epoch_valid_samples: int = field(
        default=1000,
        metadata=spec(
            "valid samples (seeded subset) scored after every epoch for the progress line; "
            "0 = no per-epoch validation",
            ge=0,
        ),
    )
    baselines: SeqBaselines = field(
        default_factory=SeqBaselines, metadata={"help": "settings of the item-ID models"}
    )

    def check(self) -> None:
        if self.reference is not None and self.reference not in self.models:
            raise invalid("reference", f"must be one of models {self.models}", self.reference)


def _popularity_scores(split: LOOSplit, samples: pd.DataFrame) -> np.ndarray:
    counts = count_items(split.train, split.n_items).astype(np.float32)
    return np.broadcast_to(counts, (len(samples), split.n_items))


def _fit_model(name: str, cfg: SeqRecConfig, split: LOOSplit, on_epoch: Any = None) -> Any:
    if name == "genrec":
        return _fit_genrec(cfg, split)
    model_cls = GRU4RecRecommender if name == "gru4rec" else SASRecRecommender
    return model_cls(getattr(cfg.baselines, name)).fit(split.train, split.n_items, on_epoch)


def _fit_genrec(cfg: SeqRecConfig, split: LOOSplit) -> Any:
    from recbias.genrec import GenerativeRecommender

    if split.items is None:
        raise DataError("genrec needs item texts (titles): the split was built without them")
    train = split.train
    n = cfg.genrec_train_samples
    if n is not None and n < len(train):
        seed = cfg.seed if cfg.seed is not None else cfg.genrec.seed
        train = train.sample(n=n, random_state=seed).sort_values("sample_id")
    return GenerativeRecommender(cfg.genrec).fit(train, split.items, split.valid)


def run_model(
    name: str, cfg: SeqRecConfig, split: LOOSplit, on_epoch: Any = None
) -> dict[str, Any]:
    """Train one model; full-ranking metrics on valid and test, test ranks, epoch times/losses.

    ``on_epoch(epoch, model)`` runs after each epoch of the item-ID nets (not popularity/genrec).
    """
    if name == "popularity":
        score, seconds, losses = (lambda s: _popularity_scores(split, s)), [], []
    else:
        model = _fit_model(name, cfg, split, on_epoch)
        score = model.scores
        seconds = list(getattr(model, "epoch_seconds", []))
        losses = list(getattr(model, "losses", []))
    result: dict[str, Any] = {"epoch_seconds": seconds, "epoch_losses": losses}
    for part in ("valid", "test"):
        samples = getattr(split, part)
        if part == "valid" and samples.empty:
            result[part] = {}
            continue
        scores = score(samples)
        scores = scores.float().numpy() if hasattr(scores, "numpy") else np.asarray(scores)
        targets = samples["target"].to_numpy()
        result[part] = full_ranking_metrics(scores, targets, cfg.k)
        if part == "test":
            result["test_ranks"] = full_ranks(scores, targets).tolist()
            result["test_sample_ids"] = samples["sample_id"].astype(int).tolist()
    log.info("%s: test %s", name, result["test"])
    return result


def apply_seed(cfg: SeqRecConfig) -> None:
    """``seed``, when set, becomes every model's seed."""
    if cfg.seed is not None:
        cfg.baselines.gru4rec.seed = cfg.baselines.sasrec.seed = cfg.genrec.seed = cfg.seed


def run_seqrec(cfg: SeqRecConfig, split: LOOSplit) -> dict[str, dict]:
    """Train each model on ``split.train``; full-ranking metrics on valid and test, epoch times."""
    cfg.validate()
    apply_seed(cfg)
    return {name: run_model(name, cfg, split) for name in cfg.models}
