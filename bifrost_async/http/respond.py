"""Small ASGI response helpers: every answer the service gives itself is JSON; a stored
upstream response goes back as the bytes it was (:func:`send_bytes`)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from bifrost_async.core import jsonsafe


def encode_json(body: Any) -> bytes:
    """Compact strict UTF-8 JSON (:func:`bifrost_async.core.jsonsafe.dumps`): whatever a stored job
    holds, its answer can be written."""
    return jsonsafe.dumps(body)


async def send_json(
    send: Any,
    status: int,
    body: Any,
    headers: Mapping[str, str] | None = None,
    *,
    message_prefix: str = "http",
) -> None:
    """Send one complete JSON response; ``message_prefix="websocket.http"`` sends it as the
    answer to a WebSocket handshake (the ASGI ``websocket.http.response`` extension)."""
    payload = encode_json(body)
    raw_headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(payload)).encode()),
    ]
    raw_headers += [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in (headers or {}).items()]
    await send({"type": f"{message_prefix}.response.start", "status": status, "headers": raw_headers})
    await send({"type": f"{message_prefix}.response.body", "body": payload})


async def send_bytes(send: Any, status: int, content_type: str | None, body: bytes) -> None:
    """Send one complete response of ``body`` as it is (an upstream's own answer, replayed)."""
    headers = [(b"content-length", str(len(body)).encode())]
    if content_type:
        headers.insert(0, (b"content-type", content_type.encode("latin-1")))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
