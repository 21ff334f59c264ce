"""Duplicate-title policies, so that every title names exactly one item.

Generative recommenders are scored by matching generated titles, so two items with one title are
indistinguishable. ``items`` must already be in item order (see ``filters.natural_order``); "first"
below means first in that order.

- ``disambiguate``: append `` (year)`` to every item of a shared title when a valid 4-digit ``year``
  exists (unless the title already ends with it); titles still shared after that get `` (2)``,
  `` (3)``... in item order.
- ``merge``: keep the first item of each shared title and remap the others' interactions to it.
- ``drop``: drop every item with a shared title and its interactions.
"""

from __future__ import annotations

import logging
import re
from typing import Any

import numpy as np
import pandas as pd

from recbias.errors import DataError

log = logging.getLogger(__name__)

_YEAR = re.compile(r"\d{4}")
EXAMPLES = 5

Result = tuple[pd.DataFrame, pd.DataFrame, dict[str, Any]]
Result1 = tuple[pd.DataFrame, dict[str, Any]]


def dedup_titles(items: pd.DataFrame, interactions: pd.DataFrame, policy: str) -> Result:
    """Apply ``policy`` to items sharing a title; report what changed."""
    shared = items["title"].duplicated(keep=False).to_numpy()
    report: dict[str, Any] = {
        "policy": policy,
        "shared_titles": int(items.loc[shared, "title"].nunique()),
        "items_with_shared_title": int(shared.sum()),
    }
    if not shared.any():
        return items, interactions, report
    handler = {"disambiguate": _disambiguate, "merge": _merge, "drop": _drop}[policy]
    items, interactions, details = handler(items, interactions, shared)
    report.update(details)
    log.info("duplicate titles (%s): %s", policy, report)
    return items, interactions, report


def _with_year(title: str, year: str) -> str:
    if _YEAR.fullmatch(year) and not title.endswith(f"({year})"):
        return f"{title} ({year})"
    return title


def _unique(candidate: str, taken: set[str]) -> str:
    if candidate not in taken:
        return candidate
    number = 2
    while f"{candidate} ({number})" in taken:
        number += 1
    return f"{candidate} ({number})"


def _disambiguate(items: pd.DataFrame, interactions: pd.DataFrame, shared: np.ndarray) -> Result:
    titles = items["title"].tolist()
    years = items["year"].fillna("").astype(str).tolist() if "year" in items else None
    taken = {t for t, s in zip(titles, shared, strict=True) if not s}
    renamed: list[str] = []
    for pos in np.flatnonzero(shared):
        candidate = _with_year(titles[pos], years[pos].strip()) if years else titles[pos]
        final = _unique(candidate, taken)
        taken.add(final)
        if final != titles[pos]:
            renamed.append(f"{titles[pos]} -> {final}")
        titles[pos] = final
    items = items.assign(title=pd.Series(titles, index=items.index, dtype="str"))
    return items, interactions, {"renamed": len(renamed), "examples": renamed[:EXAMPLES]}


def _merge(items: pd.DataFrame, interactions: pd.DataFrame, shared: np.ndarray) -> Result:
    keeper = items.groupby("title", sort=False)["item"].transform("first")
    mapping = dict(zip(items.loc[shared, "item"], keeper[shared], strict=True))
    moved = interactions["item"].isin([k for k, v in mapping.items() if k != v])
    remapped = interactions.assign(item=interactions["item"].replace(mapping))
    kept_items = items.loc[~items["title"].duplicated(keep="first")]
    examples = [f"{k} -> {v}" for k, v in mapping.items() if k != v][:EXAMPLES]
    details = {
        "merged_items": int(len(items) - len(kept_items)),
        "remapped_interactions": int(moved.sum()),
        "examples": examples,
    }
    return kept_items, remapped, details


def _drop(items: pd.DataFrame, interactions: pd.DataFrame, shared: np.ndarray) -> Result:
    kept_items = items.loc[~shared]
    keep = interactions["item"].isin(kept_items["item"])
    if not keep.any():
        raise DataError(
            "prepare.duplicate_titles = 'drop' removed every interaction "
            f"({int(shared.sum())} items share a title); use 'disambiguate' or 'merge'"
        )
    details = {
        "dropped_items": int(shared.sum()),
        "dropped_interactions": int((~keep).sum()),
        "examples": items.loc[shared, "title"].drop_duplicates().head(EXAMPLES).tolist(),
    }
    return kept_items, interactions.loc[keep], details


def resolve_item_rows(items: pd.DataFrame, policy: str, label: str) -> Result1:
    """One row per item id: exact repeats collapse; conflicting titles follow ``policy``.

    ``policy``: ``error`` (DataError naming the file, the id, its 1-based data rows and both
    titles), ``first`` or ``last`` (which row is kept).
    """
    repeated = items["item"].duplicated(keep=False).to_numpy()
    report: dict[str, Any] = {"policy": policy, "exact_repeats": 0, "conflicting_ids": 0}
    if not repeated.any():
        return items, report
    rows = items.loc[repeated].assign(row=np.flatnonzero(repeated) + 1)
    titles = rows.groupby("item", sort=False)["title"].nunique()
    conflicting = titles.index[titles > 1]
    report["exact_repeats"] = int(repeated.sum() - items.loc[repeated, "item"].nunique())
    report["conflicting_ids"] = len(conflicting)
    report["examples"] = [str(i) for i in conflicting[:EXAMPLES]]
    if len(conflicting) and policy == "error":
        first = rows.loc[rows["item"] == conflicting[0]]
        a, b = first.iloc[0], first.loc[first["title"] != first.iloc[0]["title"]].iloc[0]
        raise DataError(
            f"{label}: item id {a['item']!r} appears on data rows {a['row']} and {b['row']} with "
            f"different titles ({a['title']!r}, {b['title']!r}; {len(conflicting)} such ids); "
            "expected one row per item, or set prepare.duplicate_item_ids = 'first' or 'last'"
        )
    if len(conflicting):
        log.warning("items file %s: %d item ids with conflicting rows, kept the %s row",
                    label, len(conflicting), policy)  # fmt: skip
    keep = "last" if policy == "last" else "first"
    return items.loc[~items["item"].duplicated(keep=keep)], report
