"""Typed configs of the data layer: where the data comes from and how it is prepared.

The dataclasses are plain stdlib dataclasses whose fields declare their help and allowed values
with :func:`recbias.config.spec`; the generic TOML loader checks them, and the rules between fields
(``check()``), naming the full key. :func:`resolve_data_config` checks a config built in Python the
same way and fills the per-kind defaults (column names, domain words, dataset name), so the
resolved config is exactly what the cache key and the dataset card record. ``source.path``,
``source.interactions`` and ``source.items`` resolve against the config file's folder.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

from recbias import assets
from recbias.config import Config, ConfigKeyError, invalid, spec

SourceKind = Literal[
    "ml100k", "movielens", "recbole", "amazon2018", "amazon2023", "table", "seqcsv"
]

REQUIRED_COLUMNS = ("user", "item", "timestamp", "title")

#: Default mapping of our column names to the file's, per source kind. Kinds with fixed positional
#: formats (raw MovieLens) have no entry: their columns cannot be remapped.
DEFAULT_COLUMNS: dict[str, dict[str, str]] = {
    "ml100k": {
        "user": "user_id:token",
        "item": "item_id:token",
        "timestamp": "timestamp:float",
        "title": "movie_title:token_seq",
    },
    "amazon2018": {
        "user": "reviewerID",
        "item": "asin",
        "timestamp": "unixReviewTime",
        "title": "title",
    },
    "amazon2023": {
        "user": "user_id",
        "item": "parent_asin",
        "timestamp": "timestamp",
        "title": "title",
    },
    "table": {"user": "user_id", "item": "item_id", "timestamp": "timestamp", "title": "title"},
    "seqcsv": {"user": "user_id", "item": "item_ids", "timestamp": "timestamp"},
}
DEFAULT_COLUMNS["recbole"] = dict(DEFAULT_COLUMNS["ml100k"])

#: Extra item columns read by default, only when ``source.columns`` is left empty.
DEFAULT_EXTRAS: dict[str, dict[str, str]] = {
    "ml100k": {"year": "release_year:token", "genres": "class:token_seq"},
    "recbole": {"year": "release_year:token", "genres": "class:token_seq"},
}

#: Domain words of well-known Amazon categories (singular, plural); others fall back to item(s).
AMAZON_DOMAINS: dict[str, tuple[str, str]] = {
    "Toys_and_Games": ("toy", "toys"),
    "Video_Games": ("video game", "video games"),
    "Books": ("book", "books"),
    "CDs_and_Vinyl": ("music album", "music albums"),
    "Movies_and_TV": ("movie", "movies"),
    "Sports_and_Outdoors": ("sports product", "sports products"),
    "Clothing_Shoes_and_Jewelry": ("clothing item", "clothing items"),
    "Office_Products": ("office product", "office products"),
    "Beauty": ("beauty product", "beauty products"),
    "All_Beauty": ("beauty product", "beauty products"),
    "Steam": ("game", "games"),
}


@dataclass
class SourceConfig(Config):
    """Where the raw data is and how its columns map to ours."""

    kind: SourceKind = field(
        default="ml100k",
        metadata=spec(
            "Source format: ml100k (embedded default), movielens (raw GroupLens u.data/u.item or "
            "ratings.dat/movies.dat), recbole (atomic .inter/.item), amazon2018, amazon2023, "
            "table (CSV/TSV/Parquet), seqcsv (MSL-style user_id,item_ids,timestamp + id2name JSON)."
        ),
    )
    path: str | None = field(
        default=None,
        metadata=spec(
            "Directory holding the source files (ml100k: local files instead of the wheel).",
            path=True,
        ),
    )
    interactions: str | None = field(
        default=None,
        metadata=spec("Explicit interactions file; overrides the name found in path.", path=True),
    )
    items: str | None = field(
        default=None,
        metadata=spec(
            "Explicit items/metadata file; overrides the name found in path (seqcsv: an id2name "
            "JSON, or a D3/IGD info file of 'title<TAB>id' lines ending in .txt).",
            path=True,
        ),
    )
    train: str | None = field(
        default=None,
        metadata=spec(
            "split = 'given': the train file (seqcsv: sample CSV; table: interactions); default "
            "train.csv in path.",
            path=True,
        ),
    )
    valid: str | None = field(
        default=None,
        metadata=spec(
            "split = 'given': the valid file; default valid.csv in path. Missing is an error "
            "unless prepare.given_valid = 'train_tail'.",
            path=True,
        ),
    )
    test: str | None = field(
        default=None,
        metadata=spec("split = 'given': the test file; default test.csv in path.", path=True),
    )
    category: str | None = field(
        default=None, metadata=spec("Amazon category, e.g. Toys_and_Games (file-name stem).")
    )
    name: str | None = field(
        default=None, metadata=spec("Dataset name used in the output folder; default per kind.")
    )
    columns: dict[str, str] = field(
        default_factory=dict,
        metadata=spec(
            "Our column name -> the file's column name. Required names: user, item, timestamp, "
            "title; any other key (e.g. year, genres) is carried as an extra item column. Keys not "
            "given take the per-kind default; the default extra columns (RecBole ML-100K: year, "
            "genres) apply only when this mapping is empty."
        ),
    )
    genre_separator: str = field(
        default="|", metadata=spec("Separator of the genres column in table sources.")
    )
    domain_item: str | None = field(
        default=None, metadata=spec("Singular noun for an item in prompts, e.g. movie.")
    )
    domain_items: str | None = field(
        default=None, metadata=spec("Plural noun for items in prompts, e.g. movies.")
    )

    def check(self) -> None:
        _check_source(self)


@dataclass
class PrepareConfig(Config):
    """How raw interactions become cleaned, windowed and split samples."""

    max_title_words: int = field(
        default=20, metadata=spec("Drop items whose title has more words.", ge=1)
    )
    min_title_chars: int = field(
        default=2, metadata=spec("Drop items whose title is shorter.", ge=1)
    )
    drop_titles: list[str] = field(
        default_factory=lambda: ["unknown", "unkonwn"],
        metadata=spec("Junk titles to drop (case-insensitive exact match after cleaning)."),
    )
    drop_titles_containing: list[str] = field(
        default_factory=lambda: ["<span id"],
        metadata=spec("Drop items whose raw title contains any of these strings (D3 rule)."),
    )
    duplicate_titles: Literal["disambiguate", "merge", "drop"] = field(
        default="disambiguate",
        metadata=spec(
            "Items sharing a title: disambiguate (append ' (year)', then ' (2)', ' (3)' in item "
            "order), merge (keep the first item, remap interactions) or drop (all of them)."
        ),
    )
    unknown_items: Literal["drop", "error"] = field(
        default="drop",
        metadata=spec(
            "Interactions whose item is absent from the items file: drop (warn) or error."
        ),
    )
    time_window_start: str | None = field(
        default=None, metadata=spec("Keep interactions at or after this UTC date (YYYY-MM-DD).")
    )
    time_window_end: str | None = field(
        default=None,
        metadata=spec("Keep interactions strictly before this UTC date (YYYY-MM-DD)."),
    )
    kcore: int = field(
        default=5,
        metadata=spec("Iterative k-core on users and items until stable; 0 disables.", ge=0),
    )
    max_history: int = field(
        default=10, metadata=spec("Most recent items kept in a history; >= min_history.", ge=1)
    )
    min_history: int = field(default=1, metadata=spec("Fewest history items of a sample.", ge=1))
    split: Literal["chronological", "leave_one_out", "given"] = field(
        default="chronological",
        metadata=spec(
            "chronological: global cut of samples sorted by time (D3/BIGRec); leave_one_out: last "
            "sample per user is test, second-last valid; given: the source's train/valid/test "
            "files as shipped (seqcsv rows are the samples; table rows are the targets), no "
            "re-splitting, no k-core and no time window."
        ),
    )
    given_valid: Literal["file", "train_tail"] = field(
        default="file",
        metadata=spec(
            "split = 'given': validation samples come from the valid file (missing = error) or "
            "train_tail (the latest valid_ratio share of the train file's samples by timestamp, "
            "taken out of train)."
        ),
    )
    duplicate_item_ids: Literal["error", "first", "last"] = field(
        default="error",
        metadata=spec(
            "Items-file rows repeating an item id with a different title: error, or keep the "
            "first / last row. Exact repeats (same title) are always collapsed; the card counts "
            "both."
        ),
    )
    train_ratio: float = field(
        default=0.8, metadata=spec("Chronological split: train share.", ge=0)
    )
    valid_ratio: float = field(
        default=0.1, metadata=spec("Chronological split: valid share.", ge=0)
    )
    test_ratio: float = field(default=0.1, metadata=spec("Chronological split: test share.", ge=0))
    train_samples: int | None = field(
        default=None, metadata=spec("Seeded subsample of the train split; None keeps all.", ge=1)
    )
    valid_samples: int | None = field(
        default=None, metadata=spec("Seeded subsample of the valid split; None keeps all.", ge=1)
    )
    test_samples: int | None = field(
        default=None, metadata=spec("Seeded subsample of the test split; None keeps all.", ge=1)
    )
    seed: int = field(default=42, metadata=spec("Seed of the subsampling."))

    def check(self) -> None:
        _check_prepare(self)

    @property
    def split_ratios(self) -> tuple[float, float, float]:
        """(train, valid, test) shares of the chronological split."""
        return (self.train_ratio, self.valid_ratio, self.test_ratio)


@dataclass
class DataConfig(Config):
    """A data source plus its preparation; the unit that ``prepare_dataset`` caches."""

    source: SourceConfig = field(default_factory=SourceConfig, metadata=spec("Raw data source."))
    prepare: PrepareConfig = field(
        default_factory=PrepareConfig, metadata=spec("Cleaning, filtering, windowing and split.")
    )
    cache_dir: str | None = field(
        default=None,
        metadata=spec(
            "Cache root for assets and prepared datasets; default $RECBIAS_CACHE or ~/.cache/recbias."
        ),
    )


def default_cache_dir(cache_dir: str | None = None) -> Path:
    """The cache root: the given one, else ``$RECBIAS_CACHE``, else ``~/.cache/recbias``."""
    return (Path(cache_dir) if cache_dir else assets.default_cache_dir()).expanduser().resolve()


def parse_date(value: str, field_name: str) -> int:
    """Parse a ``YYYY-MM-DD`` (or ISO datetime) as UTC and return unix seconds."""
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise ConfigKeyError(field_name, "expected a date like 2017-10-01", value) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return int(moment.timestamp())


def resolve_data_config(cfg: DataConfig) -> DataConfig:
    """Return a copy with per-kind defaults filled in; raise ConfigError on invalid values.

    Idempotent: resolving a resolved config returns an equal config (same cache key).
    """
    cfg.validate()
    return dataclasses.replace(cfg, source=_resolve_source(cfg.source))


def _columns(src: SourceConfig) -> dict[str, str]:
    """The file's column names: the per-kind defaults overridden by ``source.columns``."""
    extras = {} if src.columns else DEFAULT_EXTRAS.get(src.kind, {})
    return {**DEFAULT_COLUMNS.get(src.kind, {}), **extras, **src.columns}


def _check_source(src: SourceConfig) -> None:
    if src.kind == "movielens" and src.columns:
        raise invalid(
            "columns",
            "the movielens kind has fixed column positions and takes no mapping; "
            "use kind = 'table' for other layouts",
        )
    explicit = bool(src.interactions and src.items)
    if src.kind in ("amazon2018", "amazon2023") and not src.category and not explicit:
        raise invalid(
            "category",
            f"required for kind {src.kind!r} (e.g. 'Toys_and_Games'), "
            "unless source.interactions and source.items name the files",
        )
    if src.kind != "movielens":
        needed = ("user", "item", "timestamp") if src.kind == "seqcsv" else REQUIRED_COLUMNS
        missing = [name for name in needed if not _columns(src).get(name)]
        if missing:
            raise invalid("columns", f"missing mapping for {missing}; expected keys {needed}")


def _resolve_source(src: SourceConfig) -> SourceConfig:
    item, items = _default_domain(src)
    return dataclasses.replace(
        src,
        path=_abs(src.path),
        interactions=_abs(src.interactions),
        items=_abs(src.items),
        train=_abs(src.train),
        valid=_abs(src.valid),
        test=_abs(src.test),
        columns=_columns(src),
        name=src.name or _default_name(src),
        domain_item=src.domain_item or item,
        domain_items=src.domain_items or items,
    )


def _abs(path: str | None) -> str | None:
    return str(Path(path).expanduser().resolve()) if path else None


def _default_domain(src: SourceConfig) -> tuple[str, str]:
    if src.kind in ("ml100k", "movielens", "recbole"):
        return ("movie", "movies")
    if src.kind in ("amazon2018", "amazon2023") and src.category:
        return AMAZON_DOMAINS.get(src.category, ("item", "items"))
    return ("item", "items")


def _default_name(src: SourceConfig) -> str:
    if src.kind == "ml100k":
        return "ml-100k"
    if src.category:
        return f"{src.category}-{src.kind.removeprefix('amazon')}"
    for candidate in (src.path, src.interactions):
        if candidate:
            path = Path(candidate)
            return path.name if path.is_dir() or not path.suffix else path.name.split(".")[0]
    return src.kind


def _check_prepare(p: PrepareConfig) -> None:
    if p.max_history < p.min_history:
        raise invalid("max_history", f"must be >= min_history ({p.min_history})", p.max_history)
    ratios = p.split_ratios
    if abs(sum(ratios) - 1.0) > 1e-6:
        raise invalid("train_ratio/valid_ratio/test_ratio", "must sum to 1", list(ratios))
    for name in ("time_window_start", "time_window_end"):
        value = getattr(p, name)
        if value is not None:
            parse_date(value, name)
    if p.split == "given":
        _check_given(p)


def _check_given(p: PrepareConfig) -> None:
    """The given split uses the files as shipped: no filter may change which samples exist."""
    if p.kcore:
        raise invalid("kcore", "must be 0 with split = 'given' (the shipped samples are used "
                      "as they are)", p.kcore)  # fmt: skip
    for name in ("time_window_start", "time_window_end"):
        value = getattr(p, name)
        if value is not None:
            raise invalid(name, "must be unset with split = 'given' (the shipped samples are "
                          "used as they are)", value)  # fmt: skip
