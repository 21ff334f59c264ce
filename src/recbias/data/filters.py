"""Cleaning and filtering steps of preparation; each returns its result and a report dict.

Frames keep the index of the raw interactions table throughout, so the original file order is
available to break timestamp ties.
"""

from __future__ import annotations

import html
import logging
from typing import Any

import numpy as np
import pandas as pd

from recbias.data.config import PrepareConfig
from recbias.errors import DataError

log = logging.getLogger(__name__)

_QUOTE_PAIRS = ('""', "''", "\u201c\u201d")
EXAMPLES = 5


def clean_title(raw: str) -> str:
    """Unescape HTML entities, collapse whitespace and strip matching surrounding quotes."""
    text = " ".join(html.unescape(raw).split())
    while len(text) >= 2 and text[0] + text[-1] in _QUOTE_PAIRS:
        text = " ".join(text[1:-1].split())
    return text


def _drop_reason(raw: str, title: str, cfg: PrepareConfig, junk: set[str]) -> str | None:
    if any(marker in raw for marker in cfg.drop_titles_containing):
        return "markup"
    if not title:
        return "empty"
    if title.casefold() in junk:
        return "junk"
    if len(title) < cfg.min_title_chars:
        return "too_short"
    if len(title.split()) > cfg.max_title_words:
        return "too_long"
    return None


def clean_titles(items: pd.DataFrame, cfg: PrepareConfig) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Clean every title and drop items whose title is unusable; also drop repeated item rows."""
    repeated = items["item"].duplicated(keep="first")
    items = items.loc[~repeated]
    junk = {t.casefold() for t in cfg.drop_titles}
    raw_titles = items["title"].fillna("").astype(str).tolist()
    cleaned = [clean_title(t) for t in raw_titles]
    reasons = [_drop_reason(r, c, cfg, junk) for r, c in zip(raw_titles, cleaned, strict=True)]
    keep = np.array([reason is None for reason in reasons], dtype=bool)
    kept = items.assign(title=pd.Series(cleaned, index=items.index, dtype="str")).loc[keep]
    report: dict[str, Any] = {
        "item_rows": int(len(items) + repeated.sum()),
        "repeated_item_rows": int(repeated.sum()),
        "changed_by_cleaning": sum(r != c for r, c in zip(raw_titles, cleaned, strict=True)),
        "dropped": {
            k: reasons.count(k) for k in ("markup", "empty", "junk", "too_short", "too_long")
        },
        "kept": int(keep.sum()),
    }
    log.info(
        "titles: kept %d of %d items, dropped %s", report["kept"], len(items), report["dropped"]
    )
    return kept, report


def filter_interactions(
    interactions: pd.DataFrame,
    known: pd.Series,
    titled: pd.Series,
    policy: str,
    items_label: str,
) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Drop interactions on unknown items (or raise, per policy) and on items without a title."""
    is_known = interactions["item"].isin(known)
    unknown = interactions.loc[~is_known, "item"]
    examples = unknown.drop_duplicates().head(EXAMPLES).tolist()
    if len(unknown) and policy == "error":
        raise DataError(
            f"{items_label}: {len(unknown)} interactions refer to {unknown.nunique()} items absent "
            f"from it (first: {', '.join(examples)}); expected every item listed, or set "
            "prepare.unknown_items = 'drop'"
        )
    if len(unknown):
        log.warning(
            "dropping %d interactions on %d items absent from %s (first: %s)",
            len(unknown), unknown.nunique(), items_label, ", ".join(examples),
        )  # fmt: skip
    has_title = interactions["item"].isin(titled)
    kept = interactions.loc[has_title]
    report = {
        "interactions": len(interactions),
        "unknown_item_interactions": len(unknown),
        "unknown_items": int(unknown.nunique()),
        "unknown_examples": examples,
        "untitled_item_interactions": int((is_known & ~has_title).sum()),
        "kept": len(kept),
    }
    if kept.empty:
        raise DataError(
            f"{items_label}: no interaction refers to an item with a usable title "
            f"({len(interactions)} interactions, {len(titled)} titled items); check the item "
            "column mapping and the title filters (prepare.min_title_chars, max_title_words)"
        )
    return kept, report


def time_window(
    interactions: pd.DataFrame, start: int | None, end: int | None
) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Keep interactions with ``start <= timestamp < end`` (either bound optional)."""
    stamps = interactions["timestamp"]
    keep = pd.Series(True, index=interactions.index)
    if start is not None:
        keep &= stamps >= start
    if end is not None:
        keep &= stamps < end
    kept = interactions.loc[keep]
    report = {"start": start, "end": end, "dropped": int((~keep).sum()), "kept": len(kept)}
    if kept.empty:
        raise DataError(
            f"prepare.time_window_start/end: no interaction in [{start}, {end}) "
            f"(timestamps span {int(stamps.min())}..{int(stamps.max())})"
        )
    return kept, report


def natural_order(ids: pd.Series) -> np.ndarray:
    """Positions that sort raw ids numerically when all are integers, else as strings."""
    values = ids.astype(str)
    if values.str.fullmatch(r"\d{1,18}").all():
        return np.argsort(values.astype(np.int64).to_numpy(), kind="stable")
    return np.argsort(values.to_numpy(dtype=object), kind="stable")


def kcore(interactions: pd.DataFrame, k: int) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Iteratively drop users and items with fewer than ``k`` interactions until stable."""
    report: dict[str, Any] = {"k": k, "rounds": 0}
    before = (len(interactions), interactions["user"].nunique(), interactions["item"].nunique())
    current = interactions
    while k > 0:
        users = current.groupby("user", sort=False)["user"].transform("size")
        items = current.groupby("item", sort=False)["item"].transform("size")
        keep = (users >= k) & (items >= k)
        if keep.all():
            break
        current = current.loc[keep]
        report["rounds"] += 1
    report["removed"] = {
        "interactions": before[0] - len(current),
        "users": before[1] - current["user"].nunique(),
        "items": before[2] - current["item"].nunique(),
    }
    if current.empty:
        raise DataError(
            f"prepare.kcore: the {k}-core is empty ({before[0]} interactions, {before[1]} users, "
            f"{before[2]} items before it); lower prepare.kcore"
        )
    return current, report
