"""Issue 11.8: one ``X-Forwarded-For`` rule for the pass-through, the WebSocket relay and both job
replays: from an untrusted peer the client's header is replaced by the peer's address, from a
trusted proxy the peer is appended to it."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import aiohttp
import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from bifrost_async import AsyncJobsMiddleware
from bifrost_async.cli import build_parser
from bifrost_async.proxy.settings import resolve
from bifrost_async.service.forwarding import forwarded_for, networks, parse_trusted_proxies
from tests.helpers import Recorder, Stack
from tests.proxy.test_websocket_relay import WsUpstream, ws_upstream  # noqa: F401 - the fixture
from tests.proxy_support import ROOT, run_proxy, wait_job
from tests.proxy_upstream import STATE, make_upstream

SPOOFED = "6.6.6.6"
CHAT = {"model": "openai/gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}


@pytest.mark.parametrize(
    ("trusted", "expected"), [((), "127.0.0.1"), (("127.0.0.1",), f"{SPOOFED}, 127.0.0.1")]
)
async def test_pass_through_and_http_replay_follow_one_rule(
    aiohttp_server: Any, trusted: tuple[str, ...], expected: str
) -> None:
    upstream = await aiohttp_server(make_upstream())
    args = ("--trusted-proxies", ",".join(trusted)) if trusted else ()
    async with run_proxy(f"http://127.0.0.1:{upstream.port}", *args) as proxy, httpx.AsyncClient() as client:
        claims = {"X-Forwarded-For": SPOOFED, "X-Forwarded-Host": "evil.example", "Forwarded": "for=6.6.6.6"}
        passed = await client.get(f"{proxy.url}/echo", headers=claims)
        seen = json.loads(passed.headers["x-upstream-seen"])
        assert seen["x-forwarded-for"] == expected
        # The other claims: believed from a trusted proxy, else ours (host) or none (Forwarded).
        assert seen["x-forwarded-host"] == ("evil.example" if trusted else f"127.0.0.1:{proxy.port}")
        assert seen.get("forwarded") == ("for=6.6.6.6" if trusted else None)
        submitted = await client.post(
            f"{proxy.url}/v1/async/chat/completions", json=CHAT, headers={"X-Forwarded-For": SPOOFED}
        )
        assert submitted.status_code == 202, submitted.text
        done = await wait_job(client, f"{proxy.url}/v1/async/chat/completions/{submitted.json()['id']}")
        assert done.status_code == 200, done.text
    replayed = [seen for seen in upstream.app[STATE].seen if seen["path"] == "/v1/chat/completions"]
    assert [seen["headers"]["x-forwarded-for"] for seen in replayed] == [expected]


async def _xff_endpoint(request: Request) -> JSONResponse:
    return JSONResponse({"xff": request.headers.get("x-forwarded-for")})


@pytest.mark.parametrize(
    ("trusted", "expected"), [((), "127.0.0.1"), ("127.0.0.0/8", f"{SPOOFED}, 127.0.0.1")]
)
async def test_asgi_replay_follows_the_same_rule(
    serve: Any, http: httpx.AsyncClient, trusted: Any, expected: str
) -> None:
    app = Starlette(routes=[Route("/v1/chat/completions", _xff_endpoint, methods=["POST"])])
    recorder = Recorder()
    middleware = AsyncJobsMiddleware(app, plugins=[recorder], trusted_proxies=trusted)
    # uvicorn's proxy-headers mode off: the peer the middleware sees is the TCP peer.
    server = await serve(middleware, proxy_headers=False)
    stack = Stack(server.url, app, middleware, recorder, server)
    submitted = await stack.submit(http, "chat/completions", json=CHAT, headers={"X-Forwarded-For": SPOOFED})
    done = await stack.finish(http, "chat/completions", submitted)
    assert done.json()["result"] == {"xff": expected}


async def test_websocket_relay_replaces_a_spoofed_header(ws_upstream: tuple[WsUpstream, str]) -> None:  # noqa: F811
    _, url = ws_upstream
    async with (
        run_proxy(url) as proxy,
        aiohttp.ClientSession() as session,
        session.ws_connect(
            f"{proxy.url}/v1/realtime", headers={"X-Forwarded-For": SPOOFED}, protocols=("realtime",)
        ) as ws,
    ):
        greeting = json.loads(await asyncio.wait_for(ws.receive_str(), 10))
    assert greeting["forwarded_for"] == "127.0.0.1"


def test_the_rule() -> None:
    trusted = networks(parse_trusted_proxies("10.0.0.0/8, ::1"))
    assert forwarded_for(["1.2.3.4"], "10.1.2.3", trusted) == "1.2.3.4, 10.1.2.3"
    assert forwarded_for(["1.2.3.4", "5.6.7.8"], "::1", trusted) == "1.2.3.4, 5.6.7.8, ::1"
    assert forwarded_for(["1.2.3.4"], "192.0.2.1", trusted) == "192.0.2.1"
    assert forwarded_for([], "10.1.2.3", trusted) == "10.1.2.3"
    assert forwarded_for(["1.2.3.4"], None, trusted) is None
    assert forwarded_for(["1.2.3.4"], "testclient", trusted) == "testclient"


def test_option_from_env_and_toml(tmp_path: Path) -> None:
    parser = build_parser()
    config = tmp_path / "c.toml"
    config.write_text('upstream = "http://127.0.0.1:9"\ntrusted_proxies = ["10.0.0.0/8", "192.0.2.7"]\n')
    assert resolve(parser.parse_args(["serve", "--config", str(config)]), {})["trusted_proxies"] == (
        "10.0.0.0/8,192.0.2.7"
    )
    env = {"BIFROST_ASYNC_UPSTREAM": "http://127.0.0.1:9", "BIFROST_ASYNC_TRUSTED_PROXIES": "10.0.0.1"}
    assert resolve(parser.parse_args(["serve"]), env)["trusted_proxies"] == "10.0.0.1"


def test_a_bad_trusted_proxy_is_one_line_and_exit_2() -> None:
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "bifrost_async",
            "serve",
            "--upstream",
            "http://127.0.0.1:9",
            "--trusted-proxies",
            "10.0.0.0/8,nope",
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
        check=False,
    )
    assert run.returncode == 2
    assert run.stderr.strip().splitlines() == [
        "bifrost-async: error: --trusted-proxies: invalid value '10.0.0.0/8,nope' "
        "(trusted proxy 'nope' is not an IP address or CIDR network)"
    ]
