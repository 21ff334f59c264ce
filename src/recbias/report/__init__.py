"""Reports: audit and experiment results as self-contained HTML, Markdown, CSV and LaTeX.

    from recbias.report import build_report
    paths = build_report([Path("runs/quickstart_compare")], Path("report"))   # report/report.html

Analyses only need :mod:`recbias.report.sections` (imported without matplotlib); the renderer is
loaded on first use of :func:`build_report`.
"""

from __future__ import annotations

from typing import Any

__all__ = ["ReportPaths", "build_report"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from recbias.report import build

        return getattr(build, name)
    raise AttributeError(f"module 'recbias.report' has no attribute {name!r}")
