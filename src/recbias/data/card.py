"""The dataset card as people read it: what each input file held and what preparation changed.

``card_lines(card)`` renders the card that ``prepare`` wrote (``card.json``) as short
``(what, value)`` rows; ``recbias prepare`` prints them. ``peer_title_caveats`` says on which titles
the peers' title-matching scorers can disagree with our id-level metrics.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any


def _portable(title: str) -> bool:
    """True when the peers' normalisation (strip ' \\n"', or drop first/last char) keeps it."""
    return bool(title) and title[0] not in ' \n"' and title[-1] not in ' \n"'


def _peer_key(title: str) -> str:
    """A title as D3 ``calc.py`` compares it (``strip(' \\n"')``)."""
    return title.strip(' \n"')


def peer_title_caveats(titles: Sequence[str], examples: int = 5) -> dict[str, Any]:
    """Titles a peer scorer may match differently from our item ids.

    ``collisions``: groups of distinct titles that become equal once D3/IGD strip spaces, newlines
    and quotes (their scorer then credits either item); ``non_portable``: empty titles or titles
    that begin or end with a space, newline or quote (IGD/MSL then see another string). With both
    counts 0, the peers' HR/NDCG on the export equal ours.
    """
    groups: dict[str, list[str]] = {}
    for title in titles:
        groups.setdefault(_peer_key(title), []).append(title)
    collisions = [group for group in groups.values() if len(group) > 1]
    bad = [t for t in titles if not _portable(t)]
    return {
        "items": len(titles),
        "collisions": len(collisions),
        "collision_examples": collisions[:examples],
        "non_portable": len(bad),
        "non_portable_examples": bad[:examples],
        "agrees_with_ours": not collisions and not bad,
    }


def _joined(parts: dict[str, Any]) -> str:
    return ", ".join(f"{k} {v}" for k, v in parts.items())


def _input_line(reports: dict[str, Any]) -> list[tuple[str, str]]:
    rows = reports.get("source", {}).get("file_rows", {})
    lines = [("input rows", _joined(rows))] if rows else []
    untitled = reports.get("source", {}).get("meta_records_without_title_field")
    if untitled:
        lines.append(("metadata without title", f"{untitled} records (their items are dropped)"))
    source = reports.get("source", {})
    if "rebuilt_interactions" in source:
        lines.append(("sample rows", f"{source['sample_rows']} window rows -> "
                      f"{source['rebuilt_interactions']} interactions (overlaps merged)"))  # fmt: skip
    ids = reports.get("item_ids")
    if ids:
        lines.append(("repeated item ids", f"{ids['exact_repeats']} exact repeats collapsed, "
                      f"{ids['conflicting_ids']} conflicting ids (policy {ids['policy']})"))  # fmt: skip
    return lines


def _filter_lines(reports: dict[str, Any]) -> list[tuple[str, str]]:
    lines = []
    titles = reports.get("titles")
    if titles:
        dropped = {k: v for k, v in titles["dropped"].items() if v}
        lines.append(("titles", f"{titles['changed_by_cleaning']} changed by cleaning; dropped "
                      f"{_joined(dropped) or 'none'}; {titles['kept']} items kept"))  # fmt: skip
    items = reports.get("items")
    if items:
        lines.append(("unusable items", f"{items['unknown_item_interactions']} rows on "
                      f"{items['unknown_items']} unknown items, {items['untitled_item_interactions']}"
                      f" on untitled items dropped; {items['kept']} kept"))  # fmt: skip
    window = reports.get("time_window")
    if window and (window["start"] is not None or window["end"] is not None):
        lines.append(("time window", f"[{window['start']}, {window['end']}): "
                      f"{window['dropped']} dropped"))  # fmt: skip
    dup = reports.get("duplicates")
    if dup:
        changed = {k: dup[k] for k in ("renamed", "merged_items", "dropped_items") if k in dup}
        lines.append(("duplicate titles", f"{dup['shared_titles']} titles shared by "
                      f"{dup['items_with_shared_title']} items; {dup['policy']}: "
                      f"{_joined(changed) or 'nothing to do'}"))  # fmt: skip
    core = reports.get("kcore")
    if core and core["k"]:
        lines.append((f"{core['k']}-core", f"removed {_joined(core['removed'])} "
                      f"({core['rounds']} rounds)"))  # fmt: skip
    return lines


def _given_lines(reports: dict[str, Any]) -> list[tuple[str, str]]:
    given = reports.get("given")
    if not given:
        return []
    lines = [("given split", f"files {_joined(given['files'])}; valid from {given['valid_from']}"
              + (f" ({given['moved_to_valid']} train samples moved)"
                 if given["moved_to_valid"] else ""))]  # fmt: skip
    for name, counts in given["splits"].items():
        changes = {k: v for k, v in counts.items() if k != "rows" and v}
        lines.append((f"given {name}", f"{counts['rows']} rows; {_joined(changes) or 'unchanged'}"))
    return lines


def card_lines(card: dict[str, Any]) -> list[tuple[str, str]]:
    """``(what, value)`` rows: inputs, every drop or merge, the result, the splits."""
    reports = card.get("reports", {})
    lines = [("dataset", f"{card.get('name')} ({card.get('kind')})")]
    lines += _input_line(reports) + _filter_lines(reports) + _given_lines(reports)
    counts = card.get("counts", {})
    lines.append(("result", _joined(counts)))
    for name, split in card.get("splits", {}).items():
        sub = split["samples_before_subsample"]
        note = f" (subsampled from {sub})" if sub != split["samples"] else ""
        lines.append((name, f"{split['samples']} samples{note}, {split['users']} users"))
    peer = reports.get("peer_titles")
    if peer:
        lines.append(("peer scorers", "agree with our metrics" if peer["agrees_with_ours"] else
                      f"may disagree: {peer['collisions']} title collisions, "
                      f"{peer['non_portable']} titles starting/ending with space or quote"))  # fmt: skip
    return lines
