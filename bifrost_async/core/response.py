"""Keep what rebuilds the synchronous endpoint's own response, byte for byte, for
``GET .../{id}/result``: its status, content type and body.

A job's ``result`` already holds the body in most cases (JSON re-encoded the same way, text,
base64 audio), so the body is stored a second time only when re-encoding ``result`` would not
give the very same bytes (e.g. JSON with other spacing or key escapes) and for error bodies.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from typing import Any

from python_multipart.multipart import parse_options_header

from bifrost_async.core.outcome import CapturedResponse, charset

#: Above this size, JSON bodies are not re-encoded to find an identical encoding (each try
#: costs as much as the parse): the body itself is kept instead.
_PROBE_LIMIT = 1024 * 1024


def _charset(content_type: str) -> str:
    return charset(parse_options_header(content_type)[1])


#: Ways to turn a ``result`` back into the body: the JSON encoders of common frameworks
#: (Starlette/FastAPI compact, ``json.dumps`` defaults as aiohttp uses), text, binary.
_REBUILDERS: dict[str, Callable[[Any, str], bytes]] = {
    "json-compact": lambda r, _: json.dumps(r, separators=(",", ":"), ensure_ascii=False).encode(),
    "json-compact-ascii": lambda r, _: json.dumps(r, separators=(",", ":")).encode(),
    "json": lambda r, _: json.dumps(r).encode(),
    "text": lambda r, ct: r["text"].encode(_charset(ct)),
    "audio": lambda r, _: base64.b64decode(r["audio"], validate=True),
}


def header_safe(content_type: str) -> str:
    """``content_type`` as a header value a server can send: without surrounding whitespace,
    and dropped ("") when it holds CR, LF or NUL. An in-process app can answer with anything;
    uvicorn (h11) refuses to send such a value and breaks the connection instead."""
    value = content_type.strip(" \t")
    return "" if any(char in value for char in "\r\n\x00") else value


def capture_raw(response: CapturedResponse, result: Any) -> dict[str, Any]:
    """The ``Job.raw_response`` record for ``response`` whose encoded ``result`` is given
    (``None`` for a non-2xx answer)."""
    content_type = header_safe(response.content_type.decode("latin-1"))
    record: dict[str, Any] = {"status": response.status, "content_type": content_type}
    if 200 <= response.status < 300:
        for name, rebuild in _REBUILDERS.items():
            if name.startswith("json") and len(response.body) > _PROBE_LIMIT:
                continue
            try:
                same = rebuild(result, content_type) == response.body
            except (TypeError, KeyError, ValueError, LookupError):
                continue
            if same:
                record["rebuild"] = name
                return record
    record["body"] = base64.b64encode(response.body).decode("ascii")
    return record


def rebuild_raw(raw: dict[str, Any], result: Any) -> tuple[int, str, bytes]:
    """``(status, content type, body)`` from a record :func:`capture_raw` made."""
    content_type = header_safe(str(raw.get("content_type", "")))  # also for jobs stored before
    if "body" in raw:
        body = base64.b64decode(raw["body"])
    else:
        body = _REBUILDERS[str(raw["rebuild"])](result, content_type)
    return int(raw["status"]), content_type, body
