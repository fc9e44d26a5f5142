"""WebSocket pass-through behind the real CLI: a client's WebSocket is relayed to a real aiohttp
upstream, both ways, with its headers and subprotocol; close codes travel both ways; a refusing
upstream's status reaches the client, an unreachable one is 502."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from tests.proxy_support import free_port, run_proxy


class WsUpstream:
    """``/v1/realtime`` greets with what it saw, upper-cases text, reverses bytes and closes
    with 4001 on "bye"; ``/v1/private`` refuses without a token."""

    def __init__(self) -> None:
        self.client_closed = asyncio.Event()
        self.close_code: int | None = None

    async def realtime(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(protocols=("realtime",))
        await ws.prepare(request)
        greeting = {
            "authorization": request.headers.get("Authorization"),
            "query": request.query_string,
            "forwarded_for": request.headers.get("X-Forwarded-For"),
            "protocol": ws.ws_protocol,
        }
        await ws.send_str(json.dumps(greeting))
        async for message in ws:
            if message.type is aiohttp.WSMsgType.TEXT:
                if message.data == "bye":
                    await ws.close(code=4001, message=b"as asked")
                    break
                await ws.send_str(message.data.upper())
            elif message.type is aiohttp.WSMsgType.BINARY:
                await ws.send_bytes(message.data[::-1])
        if ws.close_code is not None and ws.close_code != 4001:
            self.close_code = ws.close_code
            self.client_closed.set()
        return ws

    async def private(self, request: web.Request) -> web.StreamResponse:
        if request.headers.get("Authorization") != "Bearer sk-good":
            return web.json_response({"error": {"message": "no"}}, status=401)
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        await ws.close()
        return ws


@pytest.fixture
async def ws_upstream(aiohttp_server: Any) -> tuple[WsUpstream, str]:
    upstream = WsUpstream()
    app = web.Application()
    app.router.add_get("/v1/realtime", upstream.realtime)
    app.router.add_get("/v1/private", upstream.private)
    server = await aiohttp_server(app)
    return upstream, f"http://127.0.0.1:{server.port}"


async def test_messages_headers_and_subprotocol_travel_both_ways(ws_upstream: tuple[WsUpstream, str]) -> None:
    upstream, url = ws_upstream
    async with run_proxy(url) as proxy, aiohttp.ClientSession() as session:
        async with session.ws_connect(
            f"{proxy.url}/v1/realtime?model=gpt-realtime",
            headers={"Authorization": "Bearer sk-live"},
            protocols=("other", "realtime"),
        ) as ws:
            assert ws.protocol == "realtime"
            greeting = json.loads(await asyncio.wait_for(ws.receive_str(), 10))
            assert greeting["authorization"] == "Bearer sk-live"
            assert greeting["query"] == "model=gpt-realtime"
            assert greeting["forwarded_for"] == "127.0.0.1"
            assert greeting["protocol"] == "realtime"
            await ws.send_str("hello")
            assert await asyncio.wait_for(ws.receive_str(), 10) == "HELLO"
            await ws.send_bytes(b"\x00\x01\x02")
            assert await asyncio.wait_for(ws.receive_bytes(), 10) == b"\x02\x01\x00"
            await ws.send_str("bye")
            closing = await asyncio.wait_for(ws.receive(), 10)
            assert closing.type is aiohttp.WSMsgType.CLOSE and closing.data == 4001  # the upstream's code
        # the client closing first reaches the upstream as a close too
        async with session.ws_connect(f"{proxy.url}/v1/realtime", protocols=("realtime",)) as ws:
            await asyncio.wait_for(ws.receive_str(), 10)
            await ws.close(code=4321)
        await asyncio.wait_for(upstream.client_closed.wait(), 10)
        assert upstream.close_code == 4321
        # and the proxy still answers
        async with session.get(f"{proxy.url}/healthz") as health:
            assert health.status == 200


async def test_a_refused_handshake_keeps_the_upstream_status(ws_upstream: tuple[WsUpstream, str]) -> None:
    _, url = ws_upstream
    async with run_proxy(url) as proxy, aiohttp.ClientSession() as session:
        with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
            await session.ws_connect(f"{proxy.url}/v1/private")
        assert refused.value.status == 401
        async with session.ws_connect(
            f"{proxy.url}/v1/private", headers={"Authorization": "Bearer sk-good"}
        ) as ws:
            closing = await asyncio.wait_for(ws.receive(), 10)
            assert closing.type is aiohttp.WSMsgType.CLOSE


async def test_an_unreachable_upstream_is_502() -> None:
    down = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    async with run_proxy(down) as proxy, aiohttp.ClientSession() as session:
        with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
            await session.ws_connect(f"{proxy.url}/v1/realtime")
        assert refused.value.status == 502
