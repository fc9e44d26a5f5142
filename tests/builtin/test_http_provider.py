"""The ``http`` provider against a real aiohttp upstream, without the CLI around it."""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import tempfile
from typing import Any

import pytest
from aiohttp import web

from bifrost_async.builtin.http_provider import HttpProvider, http_provider
from bifrost_async.builtin.upstream import Upstream, UpstreamOptions
from bifrost_async.core.capture import CapturedRequest
from bifrost_async.core.hooks import make_plugin_manager, provider_registry
from bifrost_async.provider import ProviderContext, ResultTooLarge


async def _inspect(request: web.Request) -> web.Response:
    digest = hashlib.sha256()
    size = 0
    async for chunk in request.content.iter_any():
        digest.update(chunk)
        size += len(chunk)
    report = {
        "sha256": digest.hexdigest(),
        "size": size,
        "headers": {k.lower(): v for k, v in request.headers.items()},
        "raw_path": request.raw_path,
    }
    payload = json.dumps(report).encode()
    if "gzip" in request.headers.get("Accept-Encoding", ""):
        return web.Response(
            body=gzip.compress(payload),
            headers={
                "Content-Encoding": "gzip",
                "Content-Type": "application/json",
                "X-Hop": "1",
                "Connection": "X-Hop",
            },
        )
    return web.Response(body=payload, content_type="application/json")


async def _big(request: web.Request) -> web.StreamResponse:
    if request.query.get("chunked"):
        response = web.StreamResponse()
        await response.prepare(request)
        for _ in range(10):
            await response.write(b"x" * 1000)
        await response.write_eof()
        return response
    return web.Response(body=b"x" * 10000)


@pytest.fixture
async def upstream_url(aiohttp_server: Any) -> str:
    app = web.Application(client_max_size=16 * 1024 * 1024)
    app.router.add_post("/v1/audio/transcriptions", _inspect)
    app.router.add_post("/big", _big)
    server = await aiohttp_server(app)
    return f"http://127.0.0.1:{server.port}"


def _request(path: str, body: bytes, headers: list[tuple[bytes, bytes]]) -> CapturedRequest:
    spool = tempfile.SpooledTemporaryFile(max_size=1024)  # noqa: SIM115 - closed by the request
    spool.write(body)
    spool.seek(0)
    return CapturedRequest("POST", path, b"a=1&b=%20", headers, spool, len(body))


async def test_streams_a_disk_spool_and_forwards_the_right_headers(upstream_url: str) -> None:
    body = os.urandom(3 * 1024 * 1024)
    request = _request(
        "/v1/audio/transcriptions",
        body,
        [
            (b"host", b"proxy.example"),
            (b"authorization", b"Bearer sk-1"),
            (b"content-type", b"multipart/form-data; boundary=x"),
            (b"content-length", b"999"),
            (b"transfer-encoding", b"chunked"),
            (b"accept-encoding", b"br"),
            (b"connection", b"keep-alive, x-private"),
            (b"x-private", b"hop"),
            (b"x-request-id", b"r-1"),
        ],
    )
    assert request.body._rolled  # type: ignore[attr-defined]  # really on disk
    provider = http_provider(ProviderContext(app=None, options={"upstream": upstream_url, "read_timeout": 5}))
    await provider.start()
    try:
        response = await provider.execute(request, max_result_bytes=1024 * 1024)
    finally:
        await provider.close()
        request.close()
    assert response.status == 200
    report = json.loads(response.body)  # decoded from gzip: aiohttp asked for it, not the client's br
    assert report["sha256"] == hashlib.sha256(body).hexdigest() and report["size"] == len(body)
    seen = report["headers"]
    assert seen["authorization"] == "Bearer sk-1"
    assert seen["content-length"] == str(len(body))
    assert seen["content-type"] == "multipart/form-data; boundary=x"
    assert seen["x-request-id"] == "r-1"
    assert seen["host"] == upstream_url.removeprefix("http://")
    assert "transfer-encoding" not in seen and "x-private" not in seen
    assert report["raw_path"] == "/v1/audio/transcriptions?a=1&b=%20"
    names = {k for k, _ in response.headers}
    assert b"content-encoding" not in names and b"x-hop" not in names and b"connection" not in names


@pytest.mark.parametrize("query", [b"", b"chunked=1"])
async def test_result_larger_than_the_limit_fails(upstream_url: str, query: bytes) -> None:
    provider = HttpProvider(Upstream(UpstreamOptions(upstream_url)))
    await provider.start()
    request = _request("/big", b"{}", [(b"content-type", b"application/json")])
    request.query_string = query
    try:
        with pytest.raises(ResultTooLarge):
            await provider.execute(request, max_result_bytes=5000)
        assert (await provider.execute(request, max_result_bytes=10000)).body == b"x" * 10000
    finally:
        await provider.close()
        request.close()


async def test_a_shared_upstream_closes_its_session_with_the_last_holder(upstream_url: str) -> None:
    upstream = Upstream(UpstreamOptions(upstream_url))
    provider = http_provider(ProviderContext(app=None, options={"upstream": upstream}))
    await provider.start()
    await upstream.open()  # the pass-through's hold
    session = upstream.session
    await provider.close()
    assert upstream.is_open and not session.closed
    await upstream.close()
    assert not upstream.is_open and session.closed


def test_factory_options_are_checked() -> None:
    with pytest.raises(ValueError, match="needs provider_options"):
        http_provider(ProviderContext(app=None, options={}))
    with pytest.raises(TypeError, match="unknown upstream option"):
        http_provider(ProviderContext(app=None, options={"upstream": "http://u:1", "timeout": 3}))
    with pytest.raises(ValueError, match="http\\(s\\) URL"):
        http_provider(ProviderContext(app=None, options={"upstream": "u:1"}))


def test_http_is_a_registered_provider() -> None:
    assert "http" in provider_registry(make_plugin_manager(entry_points=False)).names()
