"""The contract between analyses and the report: a section of tables and figures.

Every analysis (fairness, attribution, sensitivity, probes, simulations ...) returns a
:class:`Section`. Sections are saved as JSON next to their figures and rendered by
``recbias report`` without the renderer knowing what the analysis was::

    sec = Section("fairness", "Fairness and concentration", summary="MGU@10 is ...")
    sec.tables.append(Table("mgu", "MGU@K by grouping", ["grouping", "MGU@10"], [["pop", 0.12]]))
    sec.figures.append(Figure("figures/groups.png", "Top-1 share per group vs target share."))
    sec.data["mgu"] = {"popularity": 0.12}        # raw numbers for re-use, not rendered
    save_sections(out_dir / "audit.json", [sec])

Figure paths are relative to the directory holding the JSON file.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from recbias.errors import DataError
from recbias.fsutil import write_text

Scalar = str | int | float | bool | None


@dataclass
class Table:
    name: str
    caption: str
    columns: list[str]
    rows: list[list[Scalar]]

    def __post_init__(self) -> None:
        for i, row in enumerate(self.rows):
            if len(row) != len(self.columns):
                raise ValueError(
                    f"table {self.name!r} row {i}: {len(row)} cells for {len(self.columns)} columns"
                )


@dataclass
class Figure:
    file: str
    caption: str


@dataclass
class Section:
    key: str
    title: str
    summary: str = ""
    tables: list[Table] = field(default_factory=list)
    figures: list[Figure] = field(default_factory=list)
    data: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, obj: dict[str, Any], where: str) -> Section:
        try:
            return cls(
                key=str(obj["key"]),
                title=str(obj["title"]),
                summary=str(obj.get("summary", "")),
                tables=[Table(**t) for t in obj.get("tables", [])],
                figures=[Figure(**f) for f in obj.get("figures", [])],
                data=dict(obj.get("data", {})),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise DataError(f"{where}: malformed report section: {exc}") from None


def save_sections(path: Path, sections: list[Section], meta: dict[str, Any] | None = None) -> None:
    """Write ``{"meta": ..., "sections": [...]}`` atomically."""
    doc = {"meta": meta or {}, "sections": [s.to_json() for s in sections]}
    write_text(path, json.dumps(doc, indent=2, allow_nan=True))


def load_sections(path: Path) -> tuple[dict[str, Any], list[Section]]:
    """Read a file written by :func:`save_sections`: (meta, sections)."""
    if not path.is_file():
        raise DataError(f"{path}: no such report-section file")
    try:
        doc = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise DataError(f"{path}: not JSON ({exc})") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("sections"), list):
        raise DataError(f"{path}: expected an object with a 'sections' list")
    sections = [Section.from_json(s, f"{path} section {i}") for i, s in enumerate(doc["sections"])]
    return dict(doc.get("meta", {})), sections
