"""The ``http`` provider: runs each job against an upstream gateway over HTTP.

One long-lived aiohttp session per process (shared with the proxy's pass-through when it passes
its :class:`~bifrost_async.builtin.upstream.Upstream` as the ``upstream`` option), connection limits and
connect/read timeouts. The caller's headers go along (auth included) minus hop-by-hop ones; the
spooled body is streamed from the spool, never loaded whole.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import aiohttp
import structlog

from bifrost_async.builtin.upstream import (
    UnsafeTarget,
    Upstream,
    UpstreamOptions,
    describe_failure,
    forward_headers,
    response_headers,
)
from bifrost_async.core.capture import CapturedRequest
from bifrost_async.core.hookspecs import hookimpl
from bifrost_async.core.outcome import CapturedResponse
from bifrost_async.core.provider import ProviderContext, ProviderError, ProviderFactory, ResultTooLarge

log = structlog.get_logger(__name__)

#: Read the upstream's answer in chunks of this size, counting against ``max_result_bytes``.
_READ_CHUNK = 64 * 1024


class HttpProvider:
    """Sends captured requests to ``upstream`` and collects the responses."""

    def __init__(self, upstream: Upstream) -> None:
        self.upstream = upstream

    async def start(self) -> None:
        await self.upstream.open()

    async def close(self) -> None:
        await self.upstream.close()

    async def execute(self, request: CapturedRequest, *, max_result_bytes: int) -> CapturedResponse:
        """POST the job to the upstream's synchronous path. Failures to get a complete HTTP
        response become :class:`ProviderError` (502, or 504 for timeouts); cancellation closes
        the upstream connection, which aborts the request there."""
        # Content-Length is ours (the spool's size); Accept-Encoding is dropped so aiohttp asks for
        # what it can decode and the result holds plain bytes.
        headers = forward_headers(request.headers, drop=("content-length", "accept-encoding"))
        headers["Content-Length"] = str(request.body_size)
        try:
            # Built from parts like the pass-through's: the route's path can never name a host.
            url = self.upstream.url(request.path, request.query_string)
        except UnsafeTarget as exc:
            raise ProviderError(
                500, f"route path {request.path!r} is not a plain path", code="bad_route"
            ) from exc
        data = request.iter_body() if request.body_size else None
        try:
            async with self.upstream.session.request(
                request.method,
                url,
                headers=headers,
                data=data,
                allow_redirects=False,
                auto_decompress=True,
                skip_auto_headers=("Content-Type",),
            ) as response:
                body = await _read_limited(response, max_result_bytes)
                # The body is decoded now, so the encoding and length headers no longer apply.
                kept = response_headers(response.raw_headers, drop=("content-encoding", "content-length"))
                return CapturedResponse(status=response.status, headers=kept, body=body)
        except ProviderError:
            raise
        except (aiohttp.ClientError, TimeoutError, ConnectionError) as exc:
            status, code, message = describe_failure(exc, self.upstream.options)
            log.warning("upstream.job_failed", status_code=status, code=code, exc_type=type(exc).__name__)
            raise ProviderError(status, message, code=code) from exc


async def _read_limited(response: aiohttp.ClientResponse, limit: int) -> bytes:
    declared = response.content_length
    if declared is not None and declared > limit and not response.headers.get("Content-Encoding"):
        raise ResultTooLarge(limit)
    chunks: list[bytes] = []
    size = 0
    async for chunk in response.content.iter_chunked(_READ_CHUNK):
        size += len(chunk)
        if size > limit:
            raise ResultTooLarge(limit)
        chunks.append(chunk)
    return b"".join(chunks)


def http_provider(context: ProviderContext) -> HttpProvider:
    """Factory for the ``http`` provider.

    ``options["upstream"]`` is either a shared :class:`Upstream` or the upstream URL; with a URL,
    the other options are the fields of :class:`UpstreamOptions` (``connect_timeout``,
    ``read_timeout``, ``connections``...).
    """
    options: dict[str, Any] = dict(context.options)
    target = options.pop("upstream", None)
    if isinstance(target, Upstream):
        if options:
            raise TypeError(f"options {sorted(options)} conflict with a shared Upstream")
        return HttpProvider(target)
    if not isinstance(target, str):
        raise ValueError("the http provider needs provider_options={'upstream': 'http://host:port'}")
    return HttpProvider(Upstream(UpstreamOptions.from_mapping({"url": target, **options})))


@hookimpl
def register_providers(register: Callable[[str, ProviderFactory], None]) -> None:
    register("http", http_provider)
