"""Strict parsing of the numbers a request carries (query parameters, headers, cursors).

Python's ``int()`` and ``float()`` take far more than HTTP means by a number: other scripts'
digits (``"٣"``), ``"²"`` (which passes ``str.isdigit`` and then fails ``int``), underscores,
surrounding spaces, ``"nan"``, ``"1e400"``, and thousands of digits. Every number that comes from
a client goes through here: ASCII digits only, range-checked, and a 400 that names the parameter.
"""

from __future__ import annotations

import re

from bifrost_async.core.errors import AsyncJobError

#: ASCII digits, nothing else (``\d`` would take any script's digits in a ``str`` pattern).
_DIGITS = re.compile(r"[0-9]+")
#: A non-negative decimal number: digits, optionally a fraction (no sign, exponent or spaces).
_DECIMAL = re.compile(r"[0-9]+(?:\.[0-9]+)?")
#: More digits than this can only be out of any range we accept; refused before ``int()`` works.
_MAX_DIGITS = 20


def ascii_int(text: str) -> int | None:
    """``text`` as a non-negative integer when it is 1 to 20 ASCII digits, else ``None``."""
    if len(text) > _MAX_DIGITS or not _DIGITS.fullmatch(text):
        return None
    return int(text)


def ascii_decimal(text: str) -> float | None:
    """``text`` as a non-negative number when it is ASCII digits with an optional ``.fraction``
    (at most 20 digits before the point), else ``None``."""
    if not _DECIMAL.fullmatch(text) or len(text.partition(".")[0]) > _MAX_DIGITS:
        return None
    return float(text)


def int_param(raw: str | None, param: str, *, minimum: int, maximum: int, default: int) -> int:
    """The integer parameter ``param`` (``default`` when absent), within ``[minimum, maximum]``;
    anything else is a 400 ``invalid_<param>`` whose message names ``param`` and the range."""
    if raw is None:
        return default
    value = ascii_int(raw)
    if value is None or not minimum <= value <= maximum:
        raise AsyncJobError(
            400,
            f"{param} must be an integer from {minimum} to {maximum}",
            code=f"invalid_{param}",
            param=param,
        )
    return value


_SIZE = re.compile(r"\s*([0-9]+)\s*([kmg]i?b?)?\s*", re.IGNORECASE)


def parse_size(text: str) -> int:
    """Bytes from ``"1048576"``, ``"512K"``, ``"100MiB"`` or ``"1G"`` (binary multiples)."""
    match = _SIZE.fullmatch(str(text))
    if not match:
        raise ValueError(f"not a size: {text!r}")
    unit = (match.group(2) or "").lower()[:1]
    return int(match.group(1)) * {"": 1, "k": 1024, "m": 1024**2, "g": 1024**3}[unit]
