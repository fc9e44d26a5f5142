"""The ``asgi`` provider: replays a captured request into the wrapped ASGI app, in-process.

Like httpx's ASGI transport: a fresh ``http`` scope for the synchronous path, a ``receive`` that
streams the spooled body and then reports ``http.disconnect`` only once the response is done (so
apps that listen for disconnects keep streaming), and a ``send`` that collects the response.
The submitting server's ``extensions`` are offered to the app as they were; where they include
``http.response.pathsend`` (Granian), a file sent by path is read into the result, bounded by
``max_result_bytes`` like any body.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from bifrost_async.core.capture import CHUNK_SIZE, CapturedRequest
from bifrost_async.core.hookspecs import hookimpl
from bifrost_async.core.outcome import CapturedResponse
from bifrost_async.core.provider import ProviderContext, ProviderError, ProviderFactory, ResultTooLarge

#: Scope keys carried over from the submitting request (connection facts, lifespan state).
_CARRIED = ("asgi", "http_version", "scheme", "server", "client", "root_path", "state", "extensions")


class AsgiProvider:
    """Runs jobs by calling the wrapped ASGI app directly."""

    def __init__(self, app: Any) -> None:
        if app is None:
            raise ValueError("the asgi provider needs an ASGI app to replay into")
        self.app = app

    async def start(self) -> None:
        return None

    async def close(self) -> None:
        return None

    async def execute(self, request: CapturedRequest, *, max_result_bytes: int) -> CapturedResponse:
        scope: dict[str, Any] = {k: request.scope[k] for k in _CARRIED if k in request.scope}
        if isinstance(scope.get("state"), dict):
            scope["state"] = dict(scope["state"])
        scope.update(
            type="http",
            method=request.method,
            path=request.path,
            raw_path=request.path.encode(),
            query_string=request.query_string,
            headers=list(request.headers),
        )
        scope.setdefault("asgi", {"version": "3.0"})
        scope.setdefault("http_version", "1.1")
        scope.setdefault("scheme", "http")
        scope.setdefault("root_path", "")

        request.rewind()
        response_done = asyncio.Event()
        body_done = False
        status: int | None = None
        headers: list[tuple[bytes, bytes]] = []
        chunks: list[bytes] = []
        size = 0

        async def receive() -> dict[str, Any]:
            nonlocal body_done
            if not body_done:
                chunk = request.body.read(CHUNK_SIZE)
                more = len(chunk) == CHUNK_SIZE
                if not more:
                    body_done = True
                return {"type": "http.request", "body": chunk, "more_body": more}
            await response_done.wait()
            return {"type": "http.disconnect"}

        async def send(message: dict[str, Any]) -> None:
            nonlocal status, size
            if message["type"] == "http.response.start":
                status = int(message["status"])
                headers.extend((bytes(k).lower(), bytes(v)) for k, v in message.get("headers", []))
            elif message["type"] == "http.response.body":
                chunk = message.get("body", b"")
                size += len(chunk)
                if size > max_result_bytes:
                    raise ResultTooLarge(max_result_bytes)
                chunks.append(chunk)
                if not message.get("more_body", False):
                    response_done.set()
            elif message["type"] == "http.response.pathsend":
                # The server's zero-copy file send (offered by e.g. Granian, copied from the
                # submitting scope's extensions): here the file's bytes are the job's result.
                chunk = await asyncio.to_thread(_read_file, message["path"], max_result_bytes - size + 1)
                size += len(chunk)
                if size > max_result_bytes:
                    raise ResultTooLarge(max_result_bytes)
                chunks.append(chunk)
                response_done.set()

        try:
            await self.app(scope, receive, send)
        finally:
            response_done.set()
        if status is None:
            raise ProviderError(500, "the application ended without sending a response", code="no_response")
        return CapturedResponse(status=status, headers=headers, body=b"".join(chunks))


def _read_file(path: str, at_most: int) -> bytes:
    """Up to ``at_most`` bytes of the file at ``path``: the caller asks one byte past its limit,
    so a larger file is noticed without trusting a size that may change under us."""
    with open(path, "rb") as handle:
        return handle.read(at_most)


def asgi_provider(context: ProviderContext) -> AsgiProvider:
    """Factory for the ``asgi`` provider."""
    return AsgiProvider(context.app)


@hookimpl
def register_providers(register: Callable[[str, ProviderFactory], None]) -> None:
    register("asgi", asgi_provider)
