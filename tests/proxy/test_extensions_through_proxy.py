"""The extensions through the real standalone proxy (http provider): a cancel closes the upstream
request mid-flight (the upstream sees the disconnect), and raw results come back byte-identical
to what the upstream sent."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx

from tests.proxy_support import FaultServer, run_proxy, wait_job
from tests.proxy_upstream import SPEECH_BYTES, make_upstream


async def test_cancel_aborts_the_upstream_request() -> None:
    async with (
        FaultServer("slow") as upstream,
        run_proxy(upstream.url, "--read-timeout", "60", "--concurrency", "1") as proxy,
        httpx.AsyncClient(timeout=10) as client,
    ):
        submitted = await client.post(
            f"{proxy.url}/v1/async/chat/completions", json={"model": "openai/gpt", "messages": []}
        )
        assert submitted.status_code == 202
        async with asyncio.timeout(10):  # the upstream holds the request
            while upstream.requests == 0:  # noqa: ASYNC110 - FaultServer only counts requests
                await asyncio.sleep(0.01)
        cancelled = await client.delete(proxy.url + submitted.headers["location"])
        assert cancelled.status_code == 200 and cancelled.json()["error"]["type"] == "cancelled"
        await asyncio.wait_for(upstream.aborted.wait(), 10)  # the upstream saw the disconnect
        final = await client.get(proxy.url + submitted.headers["location"])
        assert final.json()["status_code"] == 499


async def test_raw_results_through_the_proxy(aiohttp_server: Any) -> None:
    upstream = await aiohttp_server(make_upstream())
    async with (
        run_proxy(f"http://127.0.0.1:{upstream.port}") as proxy,
        httpx.AsyncClient(timeout=10) as client,
    ):
        cases = [
            ("audio/speech", {"json": {"model": "m", "input": "hi", "voice": "v"}}),
            ("embeddings", {"json": {"model": "m", "input": "é"}}),
            (
                "audio/transcriptions",
                {"files": {"file": ("a.wav", b"x" * 99)}, "data": {"model": "m", "response_format": "text"}},
            ),
            ("chat/completions", {"json": {"model": "fail/418"}}),
        ]
        for path, request in cases:
            direct = await client.post(f"{proxy.url}/v1/{path}", **request)
            submitted = await client.post(f"{proxy.url}/v1/async/{path}", **request)
            await wait_job(client, proxy.url + submitted.headers["location"])
            raw = await client.get(proxy.url + submitted.headers["location"] + "/result")
            assert (raw.status_code, raw.content) == (direct.status_code, direct.content), path
            assert raw.headers["content-type"] == direct.headers["content-type"], path
        assert raw.status_code == 418
        speech = await client.get(proxy.url + "/v1/async/audio/speech")  # list needs a credential
        assert speech.status_code == 403
    assert SPEECH_BYTES  # the speech case compared the upstream's own bytes
