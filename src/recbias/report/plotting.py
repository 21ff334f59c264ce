"""Figures of analysis sections: matplotlib on the Agg backend, saved next to the section JSON.

Analyses draw with the pyplot that :func:`agg_pyplot` returns and save with :func:`save_figure`,
whose return value is the path a :class:`recbias.report.sections.Figure` holds::

    plt = agg_pyplot()
    fig, ax = plt.subplots()
    ax.plot(x, y)
    sec.figures.append(Figure(save_figure(fig, out_dir, "lorenz"), "Lorenz curves ..."))

matplotlib is imported on first use, so that importing an analysis does not load it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

FIGURE_DIR = "figures"
DPI = 120


def agg_pyplot() -> Any:
    """``matplotlib.pyplot`` on the non-interactive Agg backend."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig: Any, out_dir: Path, name: str) -> str:
    """Save a matplotlib figure as ``out_dir/figures/name.png``; return the path relative to out_dir."""
    import matplotlib.pyplot as plt

    from recbias.fsutil import atomic_path

    rel = f"{FIGURE_DIR}/{name}.png"
    with atomic_path(Path(out_dir) / rel) as tmp:
        fig.savefig(tmp, format="png", dpi=DPI, bbox_inches="tight")
    plt.close(fig)
    return rel
