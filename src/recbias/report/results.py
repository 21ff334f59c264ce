"""Generic report sections from a results dictionary (probe and simulation ``metrics.json``).

Scalars become one "quantity / value" table under dotted keys; every list of flat records (e.g.
one row per positional strength m) becomes its own table; long numeric lists stay in the raw
data only. Analyses add their figures and a caption that says what to look for::

    sec = results_section("probe-latent", "Latent drivers", metrics, figures, summary="...")
    save_sections(run_dir / "sections.json", [sec])
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from recbias.report.sections import Figure, Scalar, Section, Table

MAX_ROWS = 60


def _is_scalar(value: Any) -> bool:
    return value is None or isinstance(value, str | int | float | bool)


def scalar_rows(results: Mapping[str, Any], prefix: str = "") -> list[list[Scalar]]:
    """``[dotted key, value]`` for every scalar reachable through nested mappings."""
    rows: list[list[Scalar]] = []
    for key, value in results.items():
        name = f"{prefix}{key}"
        if _is_scalar(value):
            rows.append([name, value])
        elif isinstance(value, Mapping):
            rows.extend(scalar_rows(value, f"{name}."))
    return rows


def _flat_record(value: Any) -> bool:
    return isinstance(value, Mapping) and all(_is_scalar(v) for v in value.values())


def record_tables(results: Mapping[str, Any], prefix: str = "") -> list[Table]:
    """One table per list of flat records (columns = union of their keys, in first-seen order)."""
    tables: list[Table] = []
    for key, value in results.items():
        name = f"{prefix}{key}"
        if isinstance(value, list) and value and all(_flat_record(v) for v in value):
            columns = list(dict.fromkeys(c for row in value for c in row))
            rows = [[row.get(c) for c in columns] for row in value[:MAX_ROWS]]
            more = f" (first {MAX_ROWS} of {len(value)})" if len(value) > MAX_ROWS else ""
            tables.append(Table(name, f"{name}: one row per entry{more}.", columns, rows))
        elif isinstance(value, Mapping):
            tables.extend(record_tables(value, f"{name}."))
    return tables


def results_section(
    key: str,
    title: str,
    results: Mapping[str, Any],
    figures: list[Figure],
    summary: str = "",
) -> Section:
    """A section with the scalars table, the record tables and the given figures."""
    tables = []
    scalars = scalar_rows(results)
    if scalars:
        tables.append(Table("values", "Headline values.", ["quantity", "value"], scalars))
    tables.extend(record_tables(results))
    return Section(key, title, summary=summary, tables=tables, figures=figures)
