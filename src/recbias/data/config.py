"""Typed configs of the data layer: where the data comes from and how it is prepared.

The dataclasses are plain stdlib dataclasses with per-field help in ``metadata["help"]``; the
generic TOML loader validates them by introspection. :func:`resolve_data_config` fills the
per-kind defaults (column names, domain words, dataset name) and checks cross-field rules, so the
resolved config is exactly what the cache key and the dataset card record.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

from recbias import assets
from recbias.errors import ConfigError

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


def _help(text: str) -> dict[str, str]:
    return {"help": text}


@dataclass
class SourceConfig:
    """Where the raw data is and how its columns map to ours."""

    kind: SourceKind = field(
        default="ml100k",
        metadata=_help(
            "Source format: ml100k (embedded default), movielens (raw GroupLens u.data/u.item or "
            "ratings.dat/movies.dat), recbole (atomic .inter/.item), amazon2018, amazon2023, "
            "table (CSV/TSV/Parquet), seqcsv (MSL-style user_id,item_ids,timestamp + id2name JSON)."
        ),
    )
    path: str | None = field(
        default=None,
        metadata=_help(
            "Directory holding the source files (ml100k: local files instead of the wheel)."
        ),
    )
    interactions: str | None = field(
        default=None,
        metadata=_help("Explicit interactions file; overrides the name found in path."),
    )
    items: str | None = field(
        default=None,
        metadata=_help(
            "Explicit items/metadata file; overrides the name found in path (seqcsv: an id2name "
            "JSON, or a D3/IGD info file of 'title<TAB>id' lines ending in .txt)."
        ),
    )
    train: str | None = field(
        default=None,
        metadata=_help(
            "split = 'given': the train file (seqcsv: sample CSV; table: interactions); default "
            "train.csv in path."
        ),
    )
    valid: str | None = field(
        default=None,
        metadata=_help(
            "split = 'given': the valid file; default valid.csv in path. Missing is an error "
            "unless prepare.given_valid = 'train_tail'."
        ),
    )
    test: str | None = field(
        default=None,
        metadata=_help("split = 'given': the test file; default test.csv in path."),
    )
    category: str | None = field(
        default=None, metadata=_help("Amazon category, e.g. Toys_and_Games (file-name stem).")
    )
    name: str | None = field(
        default=None, metadata=_help("Dataset name used in the output folder; default per kind.")
    )
    columns: dict[str, str] = field(
        default_factory=dict,
        metadata=_help(
            "Our column name -> the file's column name. Required names: user, item, timestamp, "
            "title; any other key (e.g. year, genres) is carried as an extra item column. Keys not "
            "given take the per-kind default; the default extra columns (RecBole ML-100K: year, "
            "genres) apply only when this mapping is empty."
        ),
    )
    genre_separator: str = field(
        default="|", metadata=_help("Separator of the genres column in table sources.")
    )
    domain_item: str | None = field(
        default=None, metadata=_help("Singular noun for an item in prompts, e.g. movie.")
    )
    domain_items: str | None = field(
        default=None, metadata=_help("Plural noun for items in prompts, e.g. movies.")
    )


@dataclass
class PrepareConfig:
    """How raw interactions become cleaned, windowed and split samples."""

    max_title_words: int = field(
        default=20, metadata=_help("Drop items whose title has more words.")
    )
    min_title_chars: int = field(default=2, metadata=_help("Drop items whose title is shorter."))
    drop_titles: list[str] = field(
        default_factory=lambda: ["unknown", "unkonwn"],
        metadata=_help("Junk titles to drop (case-insensitive exact match after cleaning)."),
    )
    drop_titles_containing: list[str] = field(
        default_factory=lambda: ["<span id"],
        metadata=_help("Drop items whose raw title contains any of these strings (D3 rule)."),
    )
    duplicate_titles: Literal["disambiguate", "merge", "drop"] = field(
        default="disambiguate",
        metadata=_help(
            "Items sharing a title: disambiguate (append ' (year)', then ' (2)', ' (3)' in item "
            "order), merge (keep the first item, remap interactions) or drop (all of them)."
        ),
    )
    unknown_items: Literal["drop", "error"] = field(
        default="drop",
        metadata=_help(
            "Interactions whose item is absent from the items file: drop (warn) or error."
        ),
    )
    time_window_start: str | None = field(
        default=None, metadata=_help("Keep interactions at or after this UTC date (YYYY-MM-DD).")
    )
    time_window_end: str | None = field(
        default=None,
        metadata=_help("Keep interactions strictly before this UTC date (YYYY-MM-DD)."),
    )
    kcore: int = field(
        default=5, metadata=_help("Iterative k-core on users and items until stable; 0 disables.")
    )
    max_history: int = field(default=10, metadata=_help("Most recent items kept in a history."))
    min_history: int = field(default=1, metadata=_help("Fewest history items of a sample."))
    split: Literal["chronological", "leave_one_out", "given"] = field(
        default="chronological",
        metadata=_help(
            "chronological: global cut of samples sorted by time (D3/BIGRec); leave_one_out: last "
            "sample per user is test, second-last valid; given: the source's train/valid/test "
            "files as shipped (seqcsv rows are the samples; table rows are the targets), no "
            "re-splitting, no k-core and no time window."
        ),
    )
    given_valid: Literal["file", "train_tail"] = field(
        default="file",
        metadata=_help(
            "split = 'given': validation samples come from the valid file (missing = error) or "
            "train_tail (the latest valid_ratio share of the train file's samples by timestamp, "
            "taken out of train)."
        ),
    )
    duplicate_item_ids: Literal["error", "first", "last"] = field(
        default="error",
        metadata=_help(
            "Items-file rows repeating an item id with a different title: error, or keep the "
            "first / last row. Exact repeats (same title) are always collapsed; the card counts "
            "both."
        ),
    )
    train_ratio: float = field(default=0.8, metadata=_help("Chronological split: train share."))
    valid_ratio: float = field(default=0.1, metadata=_help("Chronological split: valid share."))
    test_ratio: float = field(default=0.1, metadata=_help("Chronological split: test share."))
    train_samples: int | None = field(
        default=None, metadata=_help("Seeded subsample of the train split; None keeps all.")
    )
    valid_samples: int | None = field(
        default=None, metadata=_help("Seeded subsample of the valid split; None keeps all.")
    )
    test_samples: int | None = field(
        default=None, metadata=_help("Seeded subsample of the test split; None keeps all.")
    )
    seed: int = field(default=42, metadata=_help("Seed of the subsampling."))

    @property
    def split_ratios(self) -> tuple[float, float, float]:
        """(train, valid, test) shares of the chronological split."""
        return (self.train_ratio, self.valid_ratio, self.test_ratio)


@dataclass
class DataConfig:
    """A data source plus its preparation; the unit that ``prepare_dataset`` caches."""

    source: SourceConfig = field(default_factory=SourceConfig, metadata=_help("Raw data source."))
    prepare: PrepareConfig = field(
        default_factory=PrepareConfig, metadata=_help("Cleaning, filtering, windowing and split.")
    )
    cache_dir: str | None = field(
        default=None,
        metadata=_help(
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
        raise ConfigError(
            f"prepare.{field_name}: expected a date like 2017-10-01, got {value!r}"
        ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return int(moment.timestamp())


def resolve_data_config(cfg: DataConfig) -> DataConfig:
    """Return a copy with per-kind defaults filled in; raise ConfigError on invalid values.

    Idempotent: resolving a resolved config returns an equal config (same cache key).
    """
    _check_prepare(cfg.prepare)
    return dataclasses.replace(cfg, source=_resolve_source(cfg.source))


def _resolve_source(src: SourceConfig) -> SourceConfig:
    if src.kind == "movielens" and src.columns:
        raise ConfigError(
            "source.columns: the movielens kind has fixed column positions and takes no mapping; "
            "use kind = 'table' for other layouts"
        )
    explicit = bool(src.interactions and src.items)
    if src.kind in ("amazon2018", "amazon2023") and not src.category and not explicit:
        raise ConfigError(
            f"source.category: required for kind {src.kind!r} (e.g. 'Toys_and_Games'), "
            "unless source.interactions and source.items name the files"
        )
    extras = {} if src.columns else DEFAULT_EXTRAS.get(src.kind, {})
    columns = {**DEFAULT_COLUMNS.get(src.kind, {}), **extras, **src.columns}
    if src.kind != "movielens":
        needed = ("user", "item", "timestamp") if src.kind == "seqcsv" else REQUIRED_COLUMNS
        missing = [name for name in needed if not columns.get(name)]
        if missing:
            raise ConfigError(
                f"source.columns: missing mapping for {missing}; expected keys {needed}"
            )
    item, items = _default_domain(src)
    return dataclasses.replace(
        src,
        path=_abs(src.path),
        interactions=_abs(src.interactions),
        items=_abs(src.items),
        columns=columns,
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
    _check_min("max_title_words", p.max_title_words, 1)
    _check_min("min_title_chars", p.min_title_chars, 1)
    _check_min("kcore", p.kcore, 0)
    _check_min("min_history", p.min_history, 1)
    _check_min("max_history", p.max_history, p.min_history)
    for name in ("train_samples", "valid_samples", "test_samples"):
        value = getattr(p, name)
        if value is not None:
            _check_min(name, value, 1)
    ratios = p.split_ratios
    if any(r < 0 for r in ratios) or abs(sum(ratios) - 1.0) > 1e-6:
        raise ConfigError(
            "prepare.train_ratio/valid_ratio/test_ratio: expected non-negative shares summing to "
            f"1, got {list(ratios)}"
        )
    for name in ("time_window_start", "time_window_end"):
        value = getattr(p, name)
        if value is not None:
            parse_date(value, name)
    if p.split == "given":
        _check_given(p)


def _check_given(p: PrepareConfig) -> None:
    """The given split uses the files as shipped: no filter may change which samples exist."""
    if p.kcore:
        raise ConfigError(
            f"prepare.kcore: split = 'given' uses the shipped samples as they are; expected 0, "
            f"got {p.kcore}"
        )
    for name in ("time_window_start", "time_window_end"):
        if getattr(p, name) is not None:
            raise ConfigError(
                f"prepare.{name}: split = 'given' uses the shipped samples as they are; remove it"
            )


def _check_min(name: str, value: int, minimum: int) -> None:
    if value < minimum:
        raise ConfigError(f"prepare.{name}: expected an integer >= {minimum}, got {value}")
