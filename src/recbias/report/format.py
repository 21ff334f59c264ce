"""Number formatting shared by every report output: 4 significant digits, CIs as ``[lo, hi]``.

Example::

    fmt_number(0.0136232)                  # '0.01362'
    fmt_number(607.918)                    # '607.9'
    fmt_ci(0.013623, 0.00833, 0.020028)    # '0.01362 [0.00833, 0.02003]'
    fmt_ci(-0.0045, -0.0128, 0.004, signed=True)   # '-0.004500 [-0.012800, +0.004000]'
    slugify("SFT vs GDRT / seed 0")        # 'sft-vs-gdrt-seed-0'
    round_cell(0.0136232)                  # 0.0136 (a table cell an analysis stores)
"""

from __future__ import annotations

import math
import numbers
import re

DIGITS = 4
MISSING = "—"


def _decimals(value: float, digits: int = DIGITS) -> int:
    """Decimals that show ``digits`` significant digits of ``value`` in fixed-point notation."""
    if value == 0 or not math.isfinite(value):
        return 0
    return max(0, digits - 1 - math.floor(math.log10(abs(value))))


def _fixed_ok(value: float) -> bool:
    return value == 0 or 1e-4 <= abs(value) < 1e7


def fmt_number(value: float | int | None, digits: int = DIGITS, signed: bool = False) -> str:
    """Integers as they are; floats with ``digits`` significant digits (exponent outside 1e-4..1e7)."""
    if value is None:
        return MISSING
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, int):
        return f"{value:+d}" if signed else str(value)
    value = float(value)
    if math.isnan(value):
        return "nan"
    sign = "+" if signed else ""
    if math.isinf(value):
        return f"{value:{sign}}"
    if not _fixed_ok(value):
        return f"{value:{sign}.{digits - 1}e}"
    return f"{value:{sign}.{_decimals(value, digits)}f}"


def fmt_ci(
    mean: float | None,
    lo: float | None,
    hi: float | None,
    digits: int = DIGITS,
    signed: bool = False,
) -> str:
    """``mean [lo, hi]``; the bounds use the mean's decimals so that columns line up."""
    if mean is None or (isinstance(mean, float) and math.isnan(mean)):
        return MISSING
    head = fmt_number(mean, digits, signed)
    if lo is None or hi is None:
        return head
    ref = max(abs(float(mean)), abs(float(lo)), abs(float(hi)))
    if not _fixed_ok(ref) or not all(map(math.isfinite, (lo, hi))):
        return f"{head} [{fmt_number(lo, digits, signed)}, {fmt_number(hi, digits, signed)}]"
    dec = _decimals(float(mean) if mean else ref, digits)
    sign = "+" if signed else ""
    return f"{head} [{float(lo):{sign}.{dec}f}, {float(hi):{sign}.{dec}f}]"


def fmt_cell(value: object, digits: int = DIGITS) -> str:
    """One table cell: numbers formatted, strings as they are, None as an em dash."""
    if value is None:
        return MISSING
    if isinstance(value, bool | int | float):
        return fmt_number(value, digits)
    return str(value)


def round_cell(value: object, decimals: int = 4) -> object:
    """A number an analysis puts in a :class:`~recbias.report.sections.Table` row.

    Floats (numpy scalars too) are rounded to ``decimals`` decimals; NaN, ±inf and None become
    None (rendered as an em dash); integers (numpy's too), booleans and strings are kept.
    """
    if value is None or isinstance(value, str | numbers.Integral):
        return value
    x = float(value)  # type: ignore[arg-type]
    return round(x, decimals) if math.isfinite(x) else None


def is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def slugify(text: str) -> str:
    """A lowercase HTML id / file-name fragment: letters, digits and single dashes."""
    slug = re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")
    return slug or "section"
