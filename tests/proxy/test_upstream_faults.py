"""Upstream faults behind the real CLI: down, refusing, garbage, resetting, slow. Submits still
answer 202 and the job fails with 502/504 and a message naming the cause; pass-through answers
502/504 in the contract's error shape (or breaks off a response already started); the proxy keeps
serving."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest

from tests.proxy_support import FaultServer, free_port, run_proxy, wait_job

CASES = {
    # mode: (job status, message fragment, proxied-route status)
    "hangup": (502, "closed the connection without", 502),
    "garbage": (502, "invalid HTTP response", 502),
    "reset": (502, "broke off the response body", None),
    "slow": (504, "did not answer within 0.3 s", 504),
}


async def _submit_and_fail(client: httpx.AsyncClient, url: str) -> dict[str, Any]:
    submitted = await client.post(
        f"{url}/v1/async/chat/completions", json={"model": "openai/gpt", "messages": []}
    )
    assert submitted.status_code == 202
    done = await wait_job(client, url + submitted.headers["location"])
    assert done.status_code == 200
    body: dict[str, Any] = done.json()
    assert body["status"] == "failed"
    return body


async def _still_serving(client: httpx.AsyncClient, url: str) -> None:
    health = await client.get(f"{url}/healthz")
    assert health.status_code == 200
    assert health.json()["jobs"]["accepting"] is True


@pytest.mark.parametrize("mode", list(CASES))
async def test_upstream_fault(mode: str) -> None:
    job_status, fragment, proxied_status = CASES[mode]
    async with (
        FaultServer(mode) as upstream,
        run_proxy(upstream.url, "--read-timeout", "0.3", "--connect-timeout", "2") as proxy,
        httpx.AsyncClient(timeout=10) as client,
    ):
        job = await _submit_and_fail(client, proxy.url)
        assert job["status_code"] == job_status
        assert fragment in job["error"]["error"]["message"]
        assert f"127.0.0.1:{upstream.port}" in job["error"]["error"]["message"]
        assert job["error"]["extra_fields"]["model_requested"] == "gpt"

        if proxied_status is None:
            # The head already went out: the client must see a broken response, not a short one.
            with pytest.raises(httpx.RemoteProtocolError):
                await client.post(f"{proxy.url}/v1/chat/completions", json={"model": "gpt"})
        else:
            response = await client.post(f"{proxy.url}/v1/chat/completions", json={"model": "gpt"})
            assert response.status_code == proxied_status
            error = response.json()
            assert error["status_code"] == proxied_status
            assert fragment in error["error"]["message"]
            assert error["extra_fields"] == {}
        await _still_serving(client, proxy.url)


async def test_upstream_down() -> None:
    port = free_port()  # nothing listens here
    async with (
        run_proxy(f"http://127.0.0.1:{port}") as proxy,
        httpx.AsyncClient(timeout=10) as client,
    ):
        job = await _submit_and_fail(client, proxy.url)
        assert job["status_code"] == 502
        assert f"upstream 127.0.0.1:{port} is unreachable" in job["error"]["error"]["message"]
        response = await client.get(f"{proxy.url}/v1/models")
        assert response.status_code == 502
        assert "unreachable" in response.json()["error"]["message"]
        health = (await client.get(f"{proxy.url}/healthz")).json()
        assert health["status"] == "degraded"
        assert health["upstream"]["ok"] is False and "unreachable" in health["upstream"]["error"]
        assert (await client.get(f"{proxy.url}/readyz")).status_code == 503


async def test_job_timeout_aborts_the_upstream_request() -> None:
    """The job's own timeout cancels the provider, which must close the upstream connection."""
    async with (
        FaultServer("slow") as upstream,
        run_proxy(upstream.url, "--read-timeout", "60", "--job-timeout", "0.3") as proxy,
        httpx.AsyncClient(timeout=10) as client,
    ):
        job = await _submit_and_fail(client, proxy.url)
        assert job["status_code"] == 504
        assert "did not finish within its timeout of 0.3 s" in job["error"]["error"]["message"]
        await asyncio.wait_for(upstream.aborted.wait(), 10)
        assert upstream.requests == 1


async def test_client_leaving_a_stream_aborts_the_upstream_request() -> None:
    async with (
        FaultServer("slow") as upstream,
        run_proxy(upstream.url, "--read-timeout", "60") as proxy,
    ):
        async with httpx.AsyncClient(timeout=0.3) as client:
            with pytest.raises(httpx.ReadTimeout):
                await client.post(f"{proxy.url}/v1/chat/completions", json={"model": "gpt", "stream": True})
        await asyncio.wait_for(upstream.aborted.wait(), 10)


async def test_the_proxy_drops_idle_upstream_connections_before_the_upstream_does() -> None:
    """An upstream on uvicorn closes idle connections after 5 s; a request sent as it does
    fails with a reset. The proxy must be the one to close first: --upstream-keepalive."""
    async with (
        FaultServer("keepalive") as upstream,
        run_proxy(upstream.url, "--upstream-keepalive", "0.5") as proxy,
    ):
        async with httpx.AsyncClient(timeout=10) as client:
            response = await client.get(f"{proxy.url}/models")
            assert response.status_code == 200 and response.text == "ok"
        # aiohttp's cleanup runs about once per keep-alive period; 10 s is a generous bound.
        await asyncio.wait_for(upstream.idle_closed.wait(), timeout=10)


async def test_the_proxy_closes_idle_client_connections_after_keep_alive() -> None:
    """``--keep-alive`` is the server's idle timeout for client connections (75 s by default,
    above common load balancer timeouts); a short one shows it is applied."""
    async with FaultServer("hangup") as upstream, run_proxy(upstream.url, "--keep-alive", "1") as proxy:
        reader, writer = await asyncio.open_connection("127.0.0.1", proxy.port)
        writer.write(b"GET /healthz HTTP/1.1\r\nHost: test\r\n\r\n")
        head = await reader.readuntil(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 200")
        # The server closes the idle connection: read to EOF, bounded.
        rest = await asyncio.wait_for(reader.read(), timeout=10)
        assert b"HTTP/1.1" not in rest  # nothing more than the first answer's body
        writer.close()
