"""The real ``bifrost-async serve`` CLI with ``--store redis``, in one process and with
``--workers 2`` (uvicorn's supervisor, two worker processes on one port sharing one Redis), in
front of a real aiohttp upstream; and the refusal of ``--workers`` with the memory store."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import socket
import sys
import tempfile
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from aiohttp import web

SUBMIT = "/v1/async/embeddings"


async def _embeddings(request: web.Request) -> web.Response:
    body = await request.json()
    return web.json_response({"object": "list", "data": [{"embedding": [0.5]}], "echo": body["input"]})


async def _ok(_: web.Request) -> web.Response:
    return web.Response(text="ok")


@pytest.fixture
async def upstream(aiohttp_server: Any) -> str:
    app = web.Application()
    app.router.add_post("/v1/embeddings", _embeddings)
    app.router.add_get("/", _ok)
    server = await aiohttp_server(app)
    return f"http://127.0.0.1:{server.port}"


class Proxy:
    """The CLI as a subprocess, its JSON logs in a temporary file."""

    def __init__(self, process: asyncio.subprocess.Process, url: str, log: Any) -> None:
        self.process, self.url, self.log = process, url, log

    def events(self) -> list[dict[str, Any]]:
        self.log.seek(0)
        return [json.loads(line) for line in self.log.read().splitlines() if line.startswith("{")]

    def output(self) -> str:
        self.log.seek(0)
        return str(self.log.read())


@pytest.fixture
async def start_proxy() -> AsyncIterator[Any]:
    started: list[Proxy] = []
    files = contextlib.ExitStack()

    async def start(*args: str) -> Proxy:
        # the port is bound here and handed over (--fd): nothing can take it in between
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
            argv = [sys.executable, "-m", "bifrost_async", "serve", "--log-format", "json"]
            argv += ["--fd", str(sock.fileno())]
            env = {k: v for k, v in os.environ.items() if not k.startswith("BIFROST_ASYNC_")}
            log = files.enter_context(tempfile.TemporaryFile("w+"))  # noqa: SIM115 - closed by the ExitStack
            process = await asyncio.create_subprocess_exec(
                *argv,
                *args,
                env=env,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                pass_fds=[sock.fileno()],
            )
        proxy = Proxy(process, f"http://127.0.0.1:{port}", log)
        started.append(proxy)
        return proxy

    with files:
        yield start
        for proxy in started:
            if proxy.process.returncode is None:
                proxy.process.kill()
                await proxy.process.wait()


async def _until_ready(proxy: Proxy, client: httpx.AsyncClient, workers: int) -> None:
    """Until every worker has started its job service and the port answers (a bound on a hang)."""
    async with asyncio.timeout(60):
        while True:
            if proxy.process.returncode is not None:
                raise AssertionError(f"the proxy exited early:\n{proxy.output()}")
            started = [e for e in proxy.events() if e.get("event") == "async_jobs.started"]
            if len(started) >= workers:
                try:
                    if (await client.get(f"{proxy.url}/healthz")).status_code == 200:
                        return
                except httpx.TransportError:
                    pass
            await asyncio.sleep(0.05)


@pytest.mark.parametrize("workers", [1, 2])
async def test_serve_with_the_redis_store(
    workers: int, upstream: str, redis_url: str, start_proxy: Any
) -> None:
    """Jobs submitted and polled over fresh connections (so with two workers they land on either
    one) all complete, the metrics count all of them, and SIGTERM stops every worker cleanly."""
    proxy = await start_proxy(
        "--upstream", upstream, "--store", "redis", "--store-option", f"url={redis_url}",
        "--store-option", f"prefix=cli-workers-{workers}:", "--workers", str(workers), "--metrics", "on",
    )  # fmt: skip
    fresh = httpx.Limits(max_keepalive_connections=0)  # a new connection, so any worker, each time
    async with httpx.AsyncClient(timeout=30, limits=fresh) as client:
        await _until_ready(proxy, client, workers)
        submitted = await asyncio.gather(
            *(client.post(proxy.url + SUBMIT, json={"model": "m", "input": f"text {n}"}) for n in range(20))
        )
        assert all(response.status_code == 202 for response in submitted), [r.text for r in submitted]
        for n, response in enumerate(submitted):
            done = await client.get(proxy.url + response.headers["location"], params={"wait": 20})
            assert done.status_code == 200, done.text
            assert done.json()["status"] == "completed" and done.json()["result"]["echo"] == f"text {n}"
        # Whichever worker answers the scrape counts every worker's jobs (prometheus-client's
        # multiprocess mode, in a directory serve makes for its workers).
        # A job's end is stored a moment before its worker counts it: wait for the count (bounded).
        finished = 'bifrost_async_jobs_finished_total{request_type="embedding",status="completed"} 20.0'
        async with asyncio.timeout(30):
            while True:
                metrics = (await client.get(f"{proxy.url}/metrics")).text
                if finished in metrics:
                    break
                await asyncio.sleep(0.05)
        assert 'bifrost_async_jobs_submitted_total{request_type="embedding"} 20.0' in metrics, metrics
    proxy.process.send_signal(signal.SIGTERM)
    code = await asyncio.wait_for(proxy.process.wait(), 60)
    assert code in (0, -signal.SIGTERM), proxy.output()
    events = proxy.events()
    started = {e["worker"] for e in events if e.get("event") == "async_jobs.started"}
    assert len(started) == workers, proxy.output()
    assert sum(e.get("event") == "async_jobs.stopped" for e in events) == workers, proxy.output()
    submitters = {e.get("worker") for e in events if e.get("event") == "job.submitted"}
    print(f"{workers} worker(s): jobs submitted on {len(submitters)} of them")


async def test_workers_with_the_memory_store_are_refused(upstream: str, start_proxy: Any) -> None:
    proxy = await start_proxy("--upstream", upstream, "--workers", "2")
    assert await asyncio.wait_for(proxy.process.wait(), 60) == 2
    assert "needs a store the processes share" in proxy.output()
