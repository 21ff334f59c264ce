"""Reading run-directory files for the report: every failure names the file and what was expected."""

from __future__ import annotations

import json
import math
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from recbias.errors import DataError


def read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"{path}: cannot read ({exc})") from None
    except json.JSONDecodeError as exc:
        raise DataError(f"{path}: not valid JSON ({exc})") from None


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    """Records of a JSON-lines file; a truncated last line (a killed run) is ignored."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"{path}: cannot read ({exc})") from None
    records = []
    for i, line in enumerate(lines):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            if i == len(lines) - 1:
                break
            raise DataError(f"{path} line {i + 1}: not valid JSON ({exc})") from None
        if not isinstance(record, dict):
            raise DataError(f"{path} line {i + 1}: expected a JSON object")
        records.append(record)
    return records


def read_toml_text(path: Path) -> tuple[str, dict[str, Any]]:
    """The file's text (shown verbatim) and its parsed content."""
    try:
        text = path.read_text(encoding="utf-8")
        return text, tomllib.loads(text)
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"{path}: cannot read ({exc})") from None
    except tomllib.TOMLDecodeError as exc:
        raise DataError(f"{path}: not valid TOML ({exc})") from None


def need(obj: Any, key: str, kind: type, where: str) -> Any:
    """``obj[key]``, which must be of type ``kind``; DataError naming ``where``.key otherwise."""
    if not isinstance(obj, Mapping) or not isinstance(obj.get(key), kind):
        raise DataError(f"{where}: field '{key}' must be a {kind.__name__}")
    return obj[key]


def number(value: Any) -> float | None:
    """A finite float, or None for null/NaN/non-numbers."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) else None
