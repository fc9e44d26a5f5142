"""WebSocket pass-through for the proxy: a client's WebSocket (OpenAI's ``/v1/realtime``, say) is
opened on the same path of the upstream and relayed message by message, both ways, until either
side closes.

The handshake carries the client's headers (auth included) and subprotocols; the upstream's
choice of subprotocol is what the client gets. An upstream that refuses the handshake passes its
HTTP status on to the client (401 stays 401); one that cannot be reached gives 502 or 504 in the
contract's error shape, on servers that support the ASGI ``websocket.http.response`` extension
(uvicorn does), and a plain close (1011) elsewhere.
"""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
import structlog
from multidict import CIMultiDict

from bifrost_async.builtin.upstream import UnsafeTarget, Upstream, describe_failure
from bifrost_async.core.errors import error_body
from bifrost_async.http.respond import send_json

log = structlog.get_logger(__name__)

#: Handshake headers aiohttp writes itself for the upstream connection.
_HANDSHAKE = (
    "sec-websocket-key",
    "sec-websocket-version",
    "sec-websocket-extensions",
    "sec-websocket-protocol",
)
#: Close codes that describe a connection, not a close frame; never sent on.
_NOT_SENDABLE = frozenset({1005, 1006, 1015})


def handshake_headers(headers: CIMultiDict[str]) -> CIMultiDict[str]:
    """The forwarded request headers without the WebSocket handshake's own."""
    for name in _HANDSHAKE:
        headers.popall(name, None)
    return headers


async def relay_websocket(
    upstream: Upstream, scope: dict[str, Any], receive: Any, send: Any, headers: CIMultiDict[str]
) -> None:
    """Serve one ASGI ``websocket`` connection by relaying it to ``upstream``."""
    if (await receive())["type"] != "websocket.connect":
        return
    try:
        url = upstream.url(scope.get("raw_path") or scope["path"].encode(), scope.get("query_string", b""))
    except UnsafeTarget as exc:  # not a path: it would name another host, never relayed
        log.warning("proxy.unsafe_target_refused", scheme="websocket")
        await _refuse(scope, send, 400, str(exc), "invalid_request_target", type="invalid_request_error")
        return
    try:
        ws = await upstream.session.ws_connect(
            url,
            headers=handshake_headers(headers),
            protocols=tuple(scope.get("subprotocols") or ()),
            autoclose=False,
            autoping=True,
            max_msg_size=0,
        )
    except aiohttp.WSServerHandshakeError as exc:
        log.info("proxy.websocket_refused", path=scope["path"], status_code=exc.status)
        message = f"the upstream refused the WebSocket handshake ({exc.status})"
        await _refuse(scope, send, exc.status, message, "upstream_refused")
        return
    except (aiohttp.ClientError, TimeoutError, ConnectionError) as exc:
        status, code, message = describe_failure(exc, upstream.options)
        log.warning("proxy.websocket_failed", path=scope["path"], status_code=status, code=code)
        await _refuse(scope, send, status, message, code)
        return
    async with ws:
        await send({"type": "websocket.accept", "subprotocol": ws.protocol})
        to_upstream = asyncio.create_task(_client_to_upstream(receive, ws))
        to_client = asyncio.create_task(_upstream_to_client(ws, send))
        done, pending = await asyncio.wait({to_upstream, to_client}, return_when=asyncio.FIRST_COMPLETED)
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
        for task in done:
            if not task.cancelled() and task.exception() is not None:
                log.warning(
                    "proxy.websocket_broken", path=scope["path"], exc_type=type(task.exception()).__name__
                )


async def _client_to_upstream(receive: Any, ws: aiohttp.ClientWebSocketResponse) -> None:
    while True:
        message = await receive()
        if message["type"] == "websocket.receive":
            if message.get("text") is not None:
                await ws.send_str(message["text"])
            elif message.get("bytes") is not None:
                await ws.send_bytes(message["bytes"])
        elif message["type"] == "websocket.disconnect":
            code = message.get("code", 1000)
            await ws.close(code=1000 if code in _NOT_SENDABLE else code)
            return


async def _upstream_to_client(ws: aiohttp.ClientWebSocketResponse, send: Any) -> None:
    async for message in ws:  # ends at the upstream's close frame or a broken connection
        if message.type is aiohttp.WSMsgType.TEXT:
            await send({"type": "websocket.send", "text": message.data})
        elif message.type is aiohttp.WSMsgType.BINARY:
            await send({"type": "websocket.send", "bytes": message.data})
    code = ws.close_code
    await send({"type": "websocket.close", "code": 1011 if code is None or code in _NOT_SENDABLE else code})


async def _refuse(
    scope: dict[str, Any], send: Any, status: int, message: str, code: str, *, type: str = "upstream_error"
) -> None:
    """Answer a WebSocket handshake with an HTTP error where the server allows it, else close."""
    if "websocket.http.response" not in scope.get("extensions", {}):
        await send({"type": "websocket.close", "code": 1011})
        return
    body = error_body(status, message, type=type, code=code)
    await send_json(send, status, body, message_prefix="websocket.http")
