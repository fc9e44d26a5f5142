"""The standalone reverse proxy: every request that is not an async job goes to the upstream as
it is, streamed both ways (WebSockets too, relayed by :mod:`.proxy_ws`); ``/healthz`` and
``/readyz`` report on the proxy and the upstream.

:func:`build_proxy` wraps it in :class:`~bifrost_async.AsyncJobsMiddleware` with the ``http``
provider, both sharing one :class:`~bifrost_async.builtin.upstream.Upstream` (one aiohttp session).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Iterable, Mapping
from typing import Any

import aiohttp
import structlog
from multidict import CIMultiDict

from bifrost_async.builtin.upstream import (
    Upstream,
    UpstreamOptions,
    describe_failure,
    forward_headers,
    is_origin_form,
    response_headers,
)
from bifrost_async.core.errors import error_body
from bifrost_async.http.middleware import AsyncJobsMiddleware
from bifrost_async.http.respond import send_json
from bifrost_async.proxy.health import health_report
from bifrost_async.proxy.websocket import relay_websocket
from bifrost_async.service.forwarding import networks, parse_trusted_proxies, peer_address, with_forwarded_for

log = structlog.get_logger(__name__)

Scope = dict[str, Any]
Message = dict[str, Any]


class ProxyApp:
    """A pure ASGI reverse proxy to ``upstream``.

    Request and response bodies are streamed chunk by chunk (server-sent events flow as the
    upstream writes them). A failure before the response started answers 502/504 in the
    contract's error shape; a failure after it breaks off the client's response, since the status
    line is already gone. A client that disconnects aborts its upstream request.
    """

    def __init__(
        self,
        upstream: Upstream,
        *,
        health_path: str = "/healthz",
        ready_path: str = "/readyz",
        trusted_proxies: str | Iterable[str] = (),
    ) -> None:
        self.upstream = upstream
        #: Peers whose ``X-Forwarded-For`` is appended to rather than replaced (see :mod:`.forwarding`).
        self.trusted = networks(parse_trusted_proxies(trusted_proxies))
        self.health_path = health_path
        self.ready_path = ready_path
        #: Set by :func:`build_proxy` so ``/healthz`` can report the job queue.
        self.jobs: AsyncJobsMiddleware | None = None
        self._started_at = time.time()
        self._opened = False
        self._open_lock = asyncio.Lock()

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
        elif scope["type"] == "http":
            await self._ensure_open()
            if scope["path"] in (self.health_path, self.ready_path) and scope["method"] in ("GET", "HEAD"):
                await self._health(scope, send)
            elif not is_origin_form(_target(scope)):
                await _refuse_target(scope, send)
            else:
                await self._proxy(scope, receive, send)
        elif scope["type"] == "websocket":
            await self._ensure_open()
            await relay_websocket(self.upstream, scope, receive, send, self._upstream_headers(scope))

    # -- lifecycle -------------------------------------------------------------------------------

    async def _lifespan(self, receive: Any, send: Any) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await self._ensure_open()
                await self._warn_if_unreachable()
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                if self._opened:
                    self._opened = False
                    await self.upstream.close()
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def _warn_if_unreachable(self) -> None:
        """One clear warning when the upstream does not answer at startup. Not a refusal: the
        upstream may well start after us, and /readyz says 503 until it answers."""
        probe = await self.upstream.probe()
        if not probe["ok"]:
            log.warning(
                "proxy.upstream_unreachable_at_startup",
                upstream=str(self.upstream.base_url.with_user(None)),
                error=probe["error"],
                health_path=self.upstream.options.health_path,
            )

    async def _ensure_open(self) -> None:
        """Hold the upstream session (at lifespan startup, or on the first request without one)."""
        if not self._opened:
            async with self._open_lock:
                if not self._opened:
                    await self.upstream.open()
                    self._opened = True

    # -- health ----------------------------------------------------------------------------------

    async def _health(self, scope: Scope, send: Any) -> None:
        body = await health_report(self.upstream, self.jobs, self._started_at)
        # /healthz is liveness (the proxy answers); /readyz needs the upstream and the store, since
        # without either every submit or pass-through fails and a balancer should look elsewhere.
        status = 503 if scope["path"] == self.ready_path and body["down"] else 200
        await send_json(send, status, body, {"Cache-Control": "no-store"})

    def _upstream_headers(self, scope: Scope) -> CIMultiDict[str]:
        """The client's request headers as the upstream gets them: hop-by-hop headers dropped,
        ``X-Forwarded-For`` by the forwarding rule, other ``X-Forwarded-*`` added if absent."""
        forwarded = with_forwarded_for(list(scope["headers"]), peer_address(scope), self.trusted)
        headers = forward_headers(forwarded)
        _add_forwarded(headers, scope)
        return headers

    # -- pass-through ----------------------------------------------------------------------------

    async def _proxy(self, scope: Scope, receive: Any, send: Any) -> None:
        body_done = asyncio.Event()
        forward = asyncio.create_task(self._forward(scope, receive, send, body_done))
        watcher = asyncio.create_task(_wait_for_disconnect(receive, body_done))
        try:
            await asyncio.wait({forward, watcher}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            watcher.cancel()
            if forward.done():
                forward.result()
            else:  # the client left first: abort the upstream request with it
                forward.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await forward
                log.info("proxy.client_disconnected", path=scope["path"])

    async def _forward(self, scope: Scope, receive: Any, send: Any, body_done: asyncio.Event) -> None:
        headers = self._upstream_headers(scope)
        chunked = any(key == b"transfer-encoding" for key, _ in scope["headers"])
        has_body = chunked or headers.get("content-length", "0") != "0"
        data = _request_body(receive, body_done) if has_body else None
        if data is None:
            body_done.set()
        url = self.upstream.url(
            scope.get("raw_path") or scope["path"].encode(), scope.get("query_string", b"")
        )
        started = False
        try:
            async with self.upstream.session.request(
                scope["method"],
                url,
                headers=headers,
                data=data,
                allow_redirects=False,
                skip_auto_headers=("User-Agent", "Accept", "Accept-Encoding", "Content-Type"),
            ) as response:
                await send(
                    {
                        "type": "http.response.start",
                        "status": response.status,
                        "headers": response_headers(response.raw_headers),
                    }
                )
                started = True
                async for chunk in response.content.iter_any():
                    await send({"type": "http.response.body", "body": chunk, "more_body": True})
                await send({"type": "http.response.body", "body": b"", "more_body": False})
        except (aiohttp.ClientError, TimeoutError, ConnectionError) as exc:
            status, code, message = describe_failure(exc, self.upstream.options)
            log.warning(
                "proxy.upstream_failed",
                path=scope["path"],
                status_code=status,
                code=code,
                exc_type=type(exc).__name__,
                response_started=started,
            )
            if started:
                # The status line is gone: ending without the final body message makes the server
                # close the connection, so the client sees a broken response, not a short one.
                return
            await send_json(send, status, error_body(status, message, type="upstream_error", code=code))


async def _request_body(receive: Any, body_done: asyncio.Event) -> AsyncIterator[bytes]:
    """The client's request body as it arrives (never buffered whole)."""
    try:
        while True:
            message: Message = await receive()
            if message["type"] == "http.disconnect":
                raise ConnectionResetError("the client disconnected while sending its request body")
            chunk = message.get("body", b"")
            if chunk:
                yield chunk
            if not message.get("more_body", False):
                return
    finally:
        body_done.set()


async def _wait_for_disconnect(receive: Any, body_done: asyncio.Event) -> None:
    """Return once the client disconnects (after its body was read by the forwarder)."""
    await body_done.wait()
    while True:
        message: Message = await receive()
        if message["type"] == "http.disconnect":
            return


def _target(scope: Scope) -> str:
    raw: bytes = scope.get("raw_path") or scope["path"].encode("latin-1")
    return raw.decode("latin-1")


async def _refuse_target(scope: Scope, send: Any) -> None:
    """400 for a request target that is not a path: it would otherwise name another host."""
    log.warning("proxy.unsafe_target_refused", method=scope.get("method"))  # never the target: it is input
    message = "the request target must be a path starting with '/' (origin-form)"
    body = error_body(400, message, type="invalid_request_error", code="invalid_request_target")
    await send_json(send, 400, body)


def _add_forwarded(headers: Any, scope: Scope) -> None:
    headers.setdefault("X-Forwarded-Proto", scope.get("scheme", "http"))
    for key, value in scope["headers"]:
        if key == b"host":
            headers.setdefault("X-Forwarded-Host", value.decode("latin-1"))
            break


def build_proxy(
    upstream: str | UpstreamOptions,
    *,
    upstream_options: Mapping[str, Any] | None = None,
    **options: Any,
) -> AsyncJobsMiddleware:
    """The standalone proxy as one ASGI app: async job routes in front, pass-through behind.

    ``upstream`` is the gateway's URL (or full :class:`UpstreamOptions`); ``upstream_options`` are
    further :class:`UpstreamOptions` fields (timeouts, connections); ``options`` go to
    :class:`AsyncJobsMiddleware` (``provider`` is always ``http``).
    """
    if isinstance(upstream, str):
        upstream = UpstreamOptions.from_mapping({"url": upstream, **(upstream_options or {})})
    shared = Upstream(upstream)
    app = ProxyApp(shared, trusted_proxies=parse_trusted_proxies(options.get("trusted_proxies")))
    middleware = AsyncJobsMiddleware(app, provider="http", provider_options={"upstream": shared}, **options)
    app.jobs = middleware
    return middleware
