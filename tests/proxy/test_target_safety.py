"""Issue 11.1: a request target that is not a path never leaves the configured upstream host.

The real CLI (uvicorn's default h11 parser) gets raw request lines over a socket; a second
server, the would-be victim, must receive nothing, and the client gets 400 in the contract's
error shape. The upstream URL is built from parts (yarl), so no byte of the target can become
its host.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

from bifrost_async.builtin.http_provider import HttpProvider
from bifrost_async.builtin.upstream import UnsafeTarget, Upstream, UpstreamOptions
from bifrost_async.provider import ProviderError
from tests.builtin.test_http_provider import _request
from tests.proxy_support import run_proxy
from tests.proxy_upstream import STATE, make_upstream


async def _raw_exchange(port: int, head: str) -> tuple[int, dict[str, Any]]:
    """Send one raw request head, read the whole answer (the proxy closes after it)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(head.encode("latin-1"))
        await writer.drain()
        response_head = await reader.readuntil(b"\r\n\r\n")
        status = int(response_head.split(b" ", 2)[1])
        lengths = [
            int(line.split(b":", 1)[1])
            for line in response_head.lower().split(b"\r\n")
            if line.startswith(b"content-length:")
        ]
        # Our own answers carry a length; anything else (the victim's streamed echo) is read to EOF.
        raw = await reader.readexactly(lengths[0]) if lengths else await reader.read()
        body = json.loads(raw) if lengths else {"unexpected": raw.decode("latin-1")}
    finally:
        writer.close()
    return status, body


def _targets(victim: str) -> list[str]:
    return [
        f"@{victim}/echo/admin",  # glued onto "http://upstream:port" this named the victim
        f"http://{victim}/echo/admin",  # absolute-form
        victim,  # authority-form
        "*",  # asterisk-form
        f"echo/admin@{victim}",
    ]


async def test_non_origin_targets_get_400_and_reach_no_other_host(aiohttp_server: Any) -> None:
    upstream = await aiohttp_server(make_upstream())
    victim = await aiohttp_server(make_upstream())
    victim_address = f"127.0.0.1:{victim.port}"
    async with run_proxy(f"http://127.0.0.1:{upstream.port}") as proxy:
        for target in _targets(victim_address):
            for method in ("GET", "POST"):
                head = (
                    f"{method} {target} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer sk-secret\r\n"
                    "Content-Length: 0\r\nConnection: close\r\n\r\n"
                )
                status, body = await _raw_exchange(proxy.port, head)
                assert status == 400, (target, body)
                assert body["error"]["code"] == "invalid_request_target", body
                assert body["error"]["type"] == "invalid_request_error"
        # A WebSocket handshake with such a target is refused the same way.
        ws_head = (
            f"GET @{victim_address}/echo/ws HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
            "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
            "Sec-WebSocket-Version: 13\r\n\r\n"
        )
        reader, writer = await asyncio.open_connection("127.0.0.1", proxy.port)
        writer.write(ws_head.encode())
        await writer.drain()
        answer = await reader.readuntil(b"\r\n\r\n")
        writer.close()
        assert answer.split(b" ", 2)[1] == b"400", answer
        # An ordinary path still goes through, to the configured upstream.
        status, body = await _raw_exchange(
            proxy.port, "GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
        )
        assert status == 200 and body == {"ok": True}
        assert "sk-secret" not in proxy.logs()
    assert victim.app[STATE].seen == []
    assert all(seen["path"] != "/echo/admin" for seen in upstream.app[STATE].seen)


@pytest.mark.parametrize(
    "path", ["@evil.example:8080/admin", "http://evil.example/", "*", "", "/a b", "/x#frag", "/x?y"]
)
def test_upstream_url_refuses_anything_but_a_path(path: str) -> None:
    upstream = Upstream(UpstreamOptions(url="http://127.0.0.1:9000"))
    with pytest.raises(UnsafeTarget):
        upstream.url(path)


@pytest.mark.parametrize("path", ["/v1/chat/completions", "//evil.example/x", "/x@evil.example:1/", "/a%2Fb"])
def test_upstream_url_keeps_the_host_and_the_path_bytes(path: str) -> None:
    url = Upstream(UpstreamOptions(url="http://127.0.0.1:9000")).url(path.encode(), b"q=a+b&r=%2F")
    assert (url.host, url.port, url.raw_path, url.raw_query_string) == (
        "127.0.0.1",
        9000,
        path,
        "q=a+b&r=%2F",
    )


async def test_the_http_replay_never_leaves_the_upstream_host(aiohttp_server: Any) -> None:
    """The job replay builds its URL the same way: a route path that is not a plain path fails
    the job cleanly (no request anywhere), and one with an ``@`` stays on the upstream's host."""
    upstream = await aiohttp_server(make_upstream())
    victim = await aiohttp_server(make_upstream())
    provider = HttpProvider(Upstream(UpstreamOptions(f"http://127.0.0.1:{upstream.port}")))
    await provider.start()
    try:
        for path in (f"@127.0.0.1:{victim.port}/echo", "/echo x"):
            request = _request(path, b"{}", [(b"content-type", b"application/json")])
            with pytest.raises(ProviderError) as refused:
                await provider.execute(request, max_result_bytes=1024)
            assert refused.value.code == "bad_route"
            request.close()
        request = _request(
            f"/echo@127.0.0.1:{victim.port}/x", b"{}", [(b"content-type", b"application/json")]
        )
        answer = await provider.execute(request, max_result_bytes=1024)
        request.close()
    finally:
        await provider.close()
    assert answer.status == 200
    assert victim.app[STATE].seen == []
    assert [seen["raw_path"] for seen in upstream.app[STATE].seen] == [
        f"/echo@127.0.0.1:{victim.port}/x?a=1&b=%20"
    ]
