"""What the renderers see: a report of parts (one per run directory) made of sections.

    doc = Report("SFT vs GDRT", parts=[Part("sft", "runs/sft", [Entry("sft-accuracy", sec, base)])])

An :class:`Entry` wraps a :class:`~recbias.report.sections.Section` with its unique HTML id, the
directory its figure paths are relative to, and render-only extras (preformatted text such as the
resolved config, and whether it starts collapsed). Renderers never read run directories.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from recbias.report.format import slugify
from recbias.report.sections import Section


@dataclass
class Code:
    """A preformatted block (e.g. ``config.toml``) shown verbatim."""

    caption: str
    text: str
    language: str = ""


@dataclass
class Entry:
    anchor: str
    section: Section
    base: Path  # figure paths of the section are relative to this directory
    code: list[Code] = field(default_factory=list)
    collapsed: bool = False

    def figure_path(self, i: int) -> Path:
        return (self.base / self.section.figures[i].file).resolve()


@dataclass
class Part:
    anchor: str
    title: str
    source: str  # the run directory as given
    entries: list[Entry] = field(default_factory=list)


@dataclass
class Report:
    title: str
    parts: list[Part] = field(default_factory=list)
    overview: list[Entry] = field(default_factory=list)  # cross-run sections, shown first

    def entries(self) -> list[Entry]:
        return [*self.overview, *(e for p in self.parts for e in p.entries)]


class Anchors:
    """Hands out unique HTML ids: ``run``, ``run-2``, ..."""

    def __init__(self) -> None:
        self._used: set[str] = set()

    def __call__(self, *parts: str) -> str:
        base = "-".join(slugify(p) for p in parts)
        anchor, n = base, 1
        while anchor in self._used:
            n += 1
            anchor = f"{base}-{n}"
        self._used.add(anchor)
        return anchor
