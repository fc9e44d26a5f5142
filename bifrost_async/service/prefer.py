"""The request knobs of the extensions: ``Prefer`` (RFC 7240) and the ``wait`` query parameter."""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qs

from bifrost_async.core.capture import Headers
from bifrost_async.core.errors import AsyncJobError
from bifrost_async.core.numbers import ascii_decimal

#: Request headers that steer this service and mean nothing (or something else) to the
#: synchronous endpoint: never replayed to it.
_OURS = frozenset(
    {b"idempotency-key", b"x-bf-async-job-result-ttl", b"x-bf-async-webhook", b"x-bf-async", b"x-bf-async-id"}
)
#: ``Prefer`` tokens this service answers itself (a chained async layer would obey them).
_OUR_PREFERENCES = frozenset({"respond-async", "wait"})


def preferences(headers: Headers) -> dict[str, str]:
    """Every ``Prefer`` header's preferences, ``{name (lowercase): value ("" if none)}``.

    RFC 7240: comma-separated ``token[=value]`` items, each optionally followed by ``;``
    parameters (ignored here), possibly over several headers; the first occurrence wins.
    """
    found: dict[str, str] = {}
    for name, raw in headers:
        if name != b"prefer":
            continue
        for item in raw.decode("latin-1").split(","):
            head = item.split(";", 1)[0].strip()
            if not head:
                continue
            key, _, value = head.partition("=")
            found.setdefault(key.strip().lower(), value.strip().strip('"'))
    return found


def query(scope: dict[str, Any]) -> dict[str, str]:
    """The query parameters (the first value of each)."""
    raw = scope.get("query_string", b"")
    if not raw:  # every plain poll: parse_qs would answer {} the long way
        return {}
    parsed = parse_qs(raw.decode("latin-1"), keep_blank_values=True)
    return {key: values[0] for key, values in parsed.items()}


def replay_headers(headers: Headers) -> Headers:
    """``headers`` for the replay to the synchronous endpoint: without this service's own
    headers, and ``Prefer`` without ``respond-async`` and ``wait`` (other preferences stay)."""
    kept: Headers = []
    for name, raw in headers:
        if name in _OURS:
            continue
        if name == b"prefer":
            items = [
                item
                for item in raw.decode("latin-1").split(",")
                if item.split(";", 1)[0].partition("=")[0].strip().lower() not in _OUR_PREFERENCES
                and item.strip()
            ]
            if not items:
                continue
            raw = ",".join(items).strip().encode("latin-1")
        kept.append((name, raw))
    return kept


def preferred_wait(raw: str, cap: float) -> float:
    """Seconds from a ``wait`` preference, capped at ``cap``; 0 when malformed (ignored)."""
    value = _seconds(raw)
    return min(value, cap) if value is not None else 0.0


def _seconds(text: str) -> float | None:
    # ASCII digits and an optional fraction only: float() would take "nan", "1e9", "٣", "1_0"
    return ascii_decimal(text)


def wait_seconds(scope: dict[str, Any], cap: float) -> float:
    """How long the client asked this answer to wait for its job to end, capped at ``cap``.

    ``?wait=N`` wins over ``Prefer: wait=N``; a malformed ``wait`` parameter is a 400, a
    malformed preference is ignored (RFC 7240: a server ignores preferences it cannot honour).
    Absent: 0, an answer at once, as the Bifrost contract has it.
    """
    asked = query(scope).get("wait")
    if asked is not None:
        value = _seconds(asked)
        if value is None:
            raise AsyncJobError(
                400,
                "wait must be a non-negative number of seconds (ASCII digits, optionally a .fraction)",
                code="invalid_wait",
                param="wait",
            )
        return min(value, cap)
    preferred = preferences(scope["headers"]).get("wait")
    return preferred_wait(preferred, cap) if preferred is not None else 0.0
