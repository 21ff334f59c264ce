"""Detect a text file cut off in its last line (an interrupted download or copy).

A cut that falls inside the last field leaves a row that still parses: ``1,2,881250949`` cut to
``1,2,88125`` reads as a 1970 timestamp. The signature checked here: the file does not end with a
line terminator and the last row's value of a numeric column has fewer characters than that
column's value on every other row. Files that merely lack a final newline pass.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from recbias.errors import DataError


def ends_without_newline(path: Path) -> bool:
    """Whether an uncompressed, non-empty file's last byte is not ``\\n`` (``.gz``: False)."""
    if path.suffix == ".gz" or not path.is_file() or path.stat().st_size == 0:
        return False
    with open(path, "rb") as handle:
        handle.seek(-1, os.SEEK_END)
        return handle.read(1) != b"\n"


def check_last_value(path: Path, values: Sequence[tuple[int, str]], role: str) -> None:
    """DataError when the last ``(line, text)`` value looks cut off (see the module doc)."""
    if len(values) < 2 or not ends_without_newline(path):
        return
    line, last = values[-1]
    shortest = min(len(text) for _, text in values[:-1])
    if len(last) < shortest:
        raise DataError(
            f"{path}:{line}: the last line has no line terminator and its {role} {last!r} is "
            f"shorter than on every other line (at least {shortest} characters); the file looks "
            "truncated: expected a complete last line"
        )
