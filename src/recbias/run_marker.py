"""The marker of an unfinished run directory (no torch import: ``report`` reads it too)."""

from __future__ import annotations

import datetime as dt
import os
import platform
from pathlib import Path

from recbias.errors import DataError
from recbias.fsutil import write_text

#: Present in a run directory from the start of a run until its results are complete: a run that
#: failed or was killed keeps it, so ``report``, ``evaluate`` and ``compare`` never take it for a
#: finished one. The file says when and where the run started.
UNFINISHED = "UNFINISHED"


def mark_unfinished(run_dir: Path, command: str = "run") -> None:
    """Write the marker (atomically) as a run starts or resumes."""
    started = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    text = (
        f"recbias {command} started {started} on {platform.node()} (pid {os.getpid()}) and has "
        "not finished: it is still running, failed or was killed. Resume it, or delete the "
        "directory.\n"
    )
    write_text(Path(run_dir) / UNFINISHED, text)


def mark_finished(run_dir: Path) -> None:
    """Remove the marker once every result of the run is written."""
    (Path(run_dir) / UNFINISHED).unlink(missing_ok=True)


def unfinished_dirs(run_dir: Path) -> list[Path]:
    """``run_dir`` and the comparison members below it (``seed-*/*``) that carry the marker."""
    run_dir = Path(run_dir)
    found = [run_dir] if (run_dir / UNFINISHED).is_file() else []
    return found + sorted(p.parent for p in run_dir.glob(f"seed-*/*/{UNFINISHED}"))


def require_finished(run_dir: Path) -> None:
    """DataError when the run (or a comparison member) is marked unfinished."""
    pending = unfinished_dirs(run_dir)
    if pending:
        raise DataError(
            f"{pending[0]}: unfinished run (it has the {UNFINISHED} marker: still running, "
            "failed or killed); expected a finished run: resume it or run it again"
        )


def require_finished_file(path: Path) -> None:
    """DataError when a result file lies in an unfinished run (its folder or the one above)."""
    for folder in list(Path(path).resolve().parents)[:2]:
        if (folder / UNFINISHED).is_file():
            require_finished(folder)
