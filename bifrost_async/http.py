"""Small ASGI response helpers: every answer the service gives itself is JSON."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any


def encode_json(body: Any) -> bytes:
    return json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


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
