"""JSON that every client can read back: what a job stores from an upstream's answer, and what
the service itself sends.

Python's ``json`` reads more than RFC 8259 allows and writes what strict parsers refuse, so an odd
upstream answer stored as-is could make every later poll of its job fail. The rules here (the
README's "Security and limits" states them):

- a lone UTF-16 surrogate (``"\\ud800"``, or its CESU-8 bytes) becomes U+FFFD, as a UTF-8 decoder
  treats an invalid sequence: a lone surrogate cannot be encoded as UTF-8 at all;
- ``NaN``, ``Infinity`` and ``-Infinity`` become ``null``, as JavaScript's ``JSON.stringify``
  and orjson write them; a number too large for a double is kept as infinity and written as
  ``null`` (:func:`dumps`);
- a value nested deeper than :data:`MAX_DEPTH` is not taken as JSON (the caller keeps it as text):
  serde_json refuses it by default, and Python could not write it back from a deep call stack.

The upstream's own bytes stay available unchanged from ``GET .../{id}/result``.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable
from typing import Any


def _orjson_dumps() -> Callable[[Any], bytes] | None:
    """orjson's ``dumps`` when the optional ``fast-json`` extra is installed."""
    try:
        import orjson
    except ImportError:  # pragma: no cover - where orjson is not installed
        return None
    dumps: Callable[[Any], bytes] = orjson.dumps  # typed whether or not orjson is installed
    return dumps


#: The fast encoder :func:`dumps` tries first (orjson's, or ``None``); tests set it to compare.
fast_dumps: Callable[[Any], bytes] | None = _orjson_dumps()

#: Deepest nesting of arrays and objects taken as a JSON result (serde_json's default limit).
MAX_DEPTH = 128

_SURROGATE = re.compile("[\ud800-\udfff]")
#: Bytes that may decode to a lone surrogate: a ``\\uD8xx``-``\\uDFxx`` escape, or CESU-8 bytes
#: (``json.loads`` decodes bytes with ``surrogatepass``). Each is searched only after a fast
#: ``bytes`` find of its first bytes: a regex alone costs ~10 ms on a 10 MB body.
_ESCAPED_SURROGATE = re.compile(rb"\\u[dD][89a-fA-F]")
_CESU_SURROGATE = re.compile(rb"\xed[\xa0-\xbf]")
#: Every byte but the ones :func:`_max_depth` reads: quotes and brackets.
_NOT_STRUCTURE = bytes(byte for byte in range(256) if byte not in b'"[]{}')


class NotPortableJSON(ValueError):
    """The body is not JSON, or not JSON that this service can store and serve as a value."""


def _no_constant(_name: str) -> None:
    return None  # NaN, Infinity, -Infinity: null


def loads(body: bytes) -> Any:
    """Parse an upstream's JSON body under the module's rules; :class:`NotPortableJSON` when it
    is not JSON or is nested deeper than :data:`MAX_DEPTH`.

    Plain JSON costs one ``json.loads`` plus a few C-speed ``bytes`` scans (about 30 ms more on
    a 10 MB embeddings answer, whose parse takes ~120 ms); the walk that repairs strings runs
    only where the bytes hint that it is needed.
    """
    try:
        # Numbers beyond a double parse as infinity and are written as null by dumps(): finding
        # them here would cost a scan as long as the parse itself (or Python per number)
        value = json.loads(body, parse_constant=_no_constant)
    except (ValueError, UnicodeDecodeError, RecursionError):
        raise NotPortableJSON("not JSON") from None
    utf16 = b"\x00" in body[:4]  # UTF-16/32 (json.loads detects them): byte hints do not apply
    if utf16 or _has_surrogate(body):
        value, too_deep = _repair(value, truncate=False)
    else:
        too_deep = body.count(b"[") + body.count(b"{") > MAX_DEPTH and _max_depth(body) > MAX_DEPTH
    if too_deep:
        raise NotPortableJSON(f"nested deeper than {MAX_DEPTH} levels")
    return value


def _has_surrogate(body: bytes) -> bool:
    return (b"\\u" in body and _ESCAPED_SURROGATE.search(body) is not None) or (
        b"\xed" in body and _CESU_SURROGATE.search(body) is not None
    )


def _max_depth(body: bytes) -> int:
    """The deepest nesting of a UTF-8 JSON text that parsed: escaped backslashes and quotes are
    dropped, then everything but quotes and brackets (C-speed ``bytes`` operations), and the few
    bytes left are read here, skipping brackets inside strings."""
    reduced = body.replace(b"\\\\", b"").replace(b'\\"', b"").translate(None, _NOT_STRUCTURE)
    depth = deepest = 0
    in_string = False
    for byte in reduced:
        if byte == 0x22:  # "
            in_string = not in_string
        elif in_string:
            continue
        elif byte in (0x5B, 0x7B):  # [ {
            depth += 1
            deepest = max(deepest, depth)
        else:
            depth -= 1
    return deepest


def clean_text(text: str) -> str:
    """``text`` with each lone surrogate replaced by U+FFFD (a decoder such as
    ``unicode_escape`` can produce them)."""
    return _SURROGATE.sub("\ufffd", text)


def scrub(value: Any) -> Any:
    """``value`` made writable as strict UTF-8 JSON: the module's rules, and containers nested
    deeper than :data:`MAX_DEPTH` replaced by ``null``. Repairs lists and dicts in place."""
    return _repair(value, truncate=True)[0]


def _fix(item: Any) -> Any:
    if isinstance(item, str):
        return clean_text(item)
    if isinstance(item, float) and not math.isfinite(item):
        return None
    return item


def _repair(value: Any, *, truncate: bool) -> tuple[Any, bool]:
    """Walk ``value`` without recursion (it may be deep); returns the repaired value and whether
    it was nested deeper than :data:`MAX_DEPTH` (truncated there when ``truncate``)."""
    if not isinstance(value, list | dict):
        return _fix(value), False
    too_deep = False
    stack: list[tuple[list[Any] | dict[Any, Any], int]] = [(value, 1)]
    while stack:
        container, depth = stack.pop()
        if isinstance(container, dict) and any(
            isinstance(key, str) and _SURROGATE.search(key) for key in container
        ):
            items = list(container.items())
            container.clear()
            container.update((clean_text(key) if isinstance(key, str) else key, item) for key, item in items)
        entries: list[tuple[Any, Any]] = (
            list(container.items()) if isinstance(container, dict) else list(enumerate(container))
        )
        for key, item in entries:
            if isinstance(item, list | dict):
                if depth >= MAX_DEPTH:
                    too_deep = True
                    if not truncate:
                        return value, True
                    container[key] = None
                else:
                    stack.append((item, depth + 1))
            elif isinstance(item, str | float):
                fixed = _fix(item)
                if fixed is not item:
                    container[key] = fixed
    return value, too_deep


def dumps(value: Any) -> bytes:
    """Strict compact UTF-8 JSON for an answer of the service: the fast path as
    ``json.dumps(ensure_ascii=False)``; a value that cannot be written so (a job stored before
    these rules, by any store) is scrubbed first, so a poll never fails on what it holds.

    With orjson installed (the ``fast-json`` extra) it writes the answer instead: compact UTF-8
    as well, ``NaN``/``Infinity`` as ``null`` as the rules say; what it refuses (a lone
    surrogate, an integer beyond 64 bits, nesting deeper than 254, a non-string key) takes the
    path above. Its numbers may be spelt differently (``1e-5`` for ``1e-05``), never valued so."""
    if fast_dumps is not None:
        try:
            return fast_dumps(value)
        except TypeError:  # orjson.JSONEncodeError is a TypeError
            pass
    try:
        return json.dumps(value, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode("utf-8")
    except (UnicodeEncodeError, ValueError, RecursionError):
        cleaned = scrub(value)
        return json.dumps(cleaned, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode("utf-8")
