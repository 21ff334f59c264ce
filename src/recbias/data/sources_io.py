"""Streaming readers shared by the sources: lines, delimited fields, JSON lines, timestamps.

Every failure becomes a one-line :class:`DataError` naming the file, the 1-based line and what was
expected. ``.gz`` files are decompressed transparently; byte offsets in decode errors then refer to
the decompressed stream.
"""

from __future__ import annotations

import gzip
import json
import math
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

from recbias.errors import DataError


@contextmanager
def open_binary(path: Path) -> Iterator[IO[bytes]]:
    """Open ``path`` for binary reading, decompressing ``.gz`` files."""
    if not path.is_file():
        raise DataError(f"{path}: file not found")
    handle: IO[bytes] = gzip.open(path, "rb") if path.suffix == ".gz" else open(path, "rb")  # noqa: SIM115
    try:
        yield handle
    except (EOFError, gzip.BadGzipFile, zlib.error) as exc:
        raise DataError(f"{path}: truncated or corrupt gzip stream ({exc})") from None
    finally:
        handle.close()


def iter_lines(path: Path, encoding: str = "utf-8") -> Iterator[tuple[int, str]]:
    """Yield ``(line_number, text)`` for each non-blank line, without the line terminator.

    Decoding is strict: an undecodable byte raises DataError with line, column and byte offset.
    """
    offset = 0
    with open_binary(path) as handle:
        for number, raw in enumerate(handle, start=1):
            try:
                text = raw.decode(encoding)
            except UnicodeDecodeError as exc:
                raise DataError(
                    f"{path}:{number}: byte 0x{raw[exc.start]:02x} at byte offset "
                    f"{offset + exc.start} (column {exc.start + 1}) is not valid {encoding}; "
                    f"expected {encoding} text"
                ) from None
            offset += len(raw)
            if number == 1:
                text = text.removeprefix("\ufeff")
            text = text.rstrip("\r\n")
            if text.strip():
                yield number, text


def iter_fields(
    path: Path, sep: str, width: int, encoding: str = "utf-8", header: bool = False
) -> Iterator[tuple[int, list[str]]]:
    """Yield ``(line_number, fields)`` of a delimited file with exactly ``width`` fields a line."""
    lines = iter_lines(path, encoding)
    if header:
        next(lines, None)
    for number, text in lines:
        fields = text.split(sep)
        if len(fields) != width:
            raise DataError(
                f"{path}:{number}: expected {width} {_sep_name(sep)}-separated fields, "
                f"found {len(fields)} (truncated or malformed line)"
            )
        yield number, fields


def _sep_name(sep: str) -> str:
    return {"\t": "tab", "|": "'|'", "::": "'::'", ",": "comma"}.get(sep, repr(sep))


def iter_json_lines(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    """Yield ``(line_number, object)`` for a file holding one JSON object per line."""
    for number, text in iter_lines(path):
        try:
            record = json.loads(text)
        except json.JSONDecodeError as exc:
            raise DataError(
                f"{path}:{number}: malformed JSON ({exc.msg} at column {exc.colno}); "
                "expected one JSON object per line (truncated file?)"
            ) from None
        if not isinstance(record, dict):
            raise DataError(f"{path}:{number}: expected a JSON object, got {type(record).__name__}")
        yield number, record


def require_key(record: dict[str, Any], key: str, path: Path, number: int, role: str) -> Any:
    """Return ``record[key]`` or raise DataError naming the missing key and the keys present."""
    try:
        return record[key]
    except KeyError:
        present = ", ".join(sorted(record)) or "none"
        raise DataError(
            f"{path}:{number}: no field {key!r} (the {role} column, see source.columns); "
            f"fields present: {present}"
        ) from None


def column_index(header: list[str], name: str, path: Path, role: str) -> int:
    """Position of ``name`` in a header row; DataError listing the header otherwise."""
    if name in header:
        return header.index(name)
    bare = [h.split(":", 1)[0] for h in header]
    if bare.count(name) == 1:
        return bare.index(name)
    raise DataError(
        f"{path}: no column {name!r} (the {role} column, see source.columns); "
        f"columns present: {', '.join(header)}"
    )


def parse_timestamp(value: Any, path: Path, number: int, scale: int = 1) -> int:
    """Parse an integer or float unix timestamp (divided by ``scale``) or raise DataError."""
    try:
        if isinstance(value, bool):
            raise TypeError
        if isinstance(value, int):
            return value // scale
        text = value.strip() if isinstance(value, str) else value
        if isinstance(text, str) and text.lstrip("-").isdigit():
            return int(text) // scale
        as_float = float(text)
        if not math.isfinite(as_float):
            raise ValueError
        return int(as_float) // scale
    except (TypeError, ValueError, OverflowError):
        raise DataError(
            f"{path}:{number}: timestamp {value!r} is not numeric; expected unix time as a number"
        ) from None


def read_json_document(path: Path) -> Any:
    """Parse a whole (small) JSON file; decode and syntax errors name the line."""
    with open_binary(path) as handle:
        data = handle.read()
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise DataError(
            f"{path}:{line}: byte 0x{data[exc.start]:02x} at byte offset {exc.start} is not "
            "valid utf-8; expected utf-8 text"
        ) from None
    try:
        return json.loads(text.removeprefix("\ufeff"))
    except json.JSONDecodeError as exc:
        raise DataError(
            f"{path}:{exc.lineno}: malformed JSON ({exc.msg} at column {exc.colno})"
        ) from None


def raise_decode_error(path: Path, encoding: str = "utf-8") -> None:
    """Re-scan a file that a bulk reader failed to decode, raising the located DataError."""
    for _ in iter_lines(path, encoding):
        pass
    raise DataError(f"{path}: not valid {encoding} text")
