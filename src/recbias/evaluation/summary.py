"""Metric tables and metric files.

Example::

    rows = {"popularity": ranking_metrics(items, targets), "sft": metrics_with_ci(...)}
    print(metrics_table_markdown(rows, ks=(1, 5, 10)))
    # | run | HR@1 | ... | NDCG@10 | valid | n |
    # | sft | 0.0123 [0.0101, 0.0145] | ...
    write_metrics_json(out_dir / "metrics.json", rows)
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from recbias.fsutil import write_json
from recbias.metrics.ranking import DEFAULT_KS, metric_names

MetricValue = float | Mapping[str, float]

# Trailing table columns: metrics key → header.
_EXTRAS = {"valid_ratio": "valid", "list_length": "k", "n": "n"}


def format_value(value: MetricValue | None, digits: int = 4) -> str:
    """``0.1234``, or ``0.1234 [0.1010, 0.1450]`` for a ``{"mean", "lo", "hi"}`` dict; ``—`` if absent."""
    if value is None:
        return "—"
    if isinstance(value, Mapping):
        lo, hi = value["lo"], value["hi"]
        return f"{value['mean']:.{digits}f} [{lo:.{digits}f}, {hi:.{digits}f}]"
    if isinstance(value, int | np.integer):
        return str(int(value))
    return "nan" if math.isnan(value) else f"{value:.{digits}f}"


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def metrics_table_markdown(
    rows: Mapping[str, Mapping[str, MetricValue]],
    ks: Sequence[int] = DEFAULT_KS,
    digits: int = 4,
) -> str:
    """One Markdown row per run: HR@k and NDCG@k for each k, then valid, k and n.

    rows: run name → metrics as returned by ``ranking_metrics`` or ``metrics_with_ci``.
    The trailing columns (``valid_ratio``, ``list_length``, ``n``) appear only when some row has
    them; ``k`` shows the list length, so @K beyond it reads as truncated.
    """
    columns = metric_names(ks)
    extras = [c for c in _EXTRAS if any(c in m for m in rows.values())]
    header = ["run", *columns, *(_EXTRAS[c] for c in extras)]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for name, metrics in rows.items():
        cells = [format_value(metrics.get(c), digits) for c in (*columns, *extras)]
        lines.append("| " + " | ".join([_cell(name), *cells]) + " |")
    return "\n".join(lines) + "\n"


def to_jsonable(obj: Any) -> Any:
    """Plain JSON values: numpy scalars/arrays become Python numbers/lists, NaN and inf null."""
    if isinstance(obj, Mapping):
        return {str(k): to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple | np.ndarray):
        return [to_jsonable(v) for v in obj]
    if isinstance(obj, bool | np.bool_):
        return bool(obj)
    if isinstance(obj, int | np.integer):
        return int(obj)
    if isinstance(obj, float | np.floating):
        return float(obj) if math.isfinite(obj) else None
    return obj


def write_metrics_json(path: Path, metrics: Mapping[str, Any]) -> None:
    """Write metrics (nested dicts of numbers) as indented JSON, atomically; NaN becomes null."""
    write_json(Path(path), to_jsonable(metrics))
