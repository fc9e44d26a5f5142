"""Redis outages do not kill live work (issue 14).

Fast: the sweep judges no lease until Redis has answered for a whole lease after an outage or a
restart (a new ``run_id``) of Redis. Slow: two real ``bifrost-async serve --store redis``
processes in front of a real aiohttp upstream; redis-server (append-only file on) is stopped
for over three leases while jobs run and then started again on the same port and data: every
job completes with the upstream's answer, none is failed as ``worker_lost``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import socket
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis.asyncio as aioredis
import structlog
from aiohttp import web
from bifrost_async.jobs import JobStatus
from bifrost_async.queue import generate_key
from bifrost_async.store import StoreContext, StoreHost, StoreReachability, fail_orphan
from bifrost_async.testing import FakeClock, make_job, processing
from redis_server import RedisServer

from bifrost_async_redis import RedisJobStore, redis_store
from bifrost_async_redis.sweep import sweep_once

LEASE = 1.0


async def _attached(url: str, clock: FakeClock, lease: float) -> tuple[RedisJobStore, StoreReachability]:
    store = redis_store(StoreContext(clock=clock, max_jobs=100, options={"url": url, "sweep_interval": 0}))
    await store.start()
    reachability = StoreReachability(clock, lease)

    async def fail(job: Any) -> Any:
        return await fail_orphan(store, job, clock())

    store.attach(StoreHost(holds=lambda job_id: False, fail_orphan=fail, reachability=reachability))
    return store, reachability


async def _orphan(store: RedisJobStore, clock: FakeClock) -> str:
    job = make_job(clock)
    await store.create(job)
    running = processing(job, clock)
    running.lease_expires_at = clock() - 1  # ran out (its worker could not renew it)
    assert await store.update(running, expect=(JobStatus.PENDING,))
    return job.id


async def test_the_sweep_waits_a_lease_after_redis_was_unreachable(redis_url: str) -> None:
    clock = FakeClock()
    store, reachability = await _attached(redis_url, clock, lease=5)
    try:
        orphan = await _orphan(store, clock)
        reachability.failed("connection refused")  # as the runner or a poll reports it
        assert await sweep_once(store) == []  # Redis answers again: live workers renew first
        clock.advance(4.9)
        assert await sweep_once(store) == []
        clock.advance(0.2)
        assert await sweep_once(store) == [orphan]
    finally:
        await store.close()


async def test_the_sweep_notices_a_restart_nobody_saw_fail(own_redis: RedisServer) -> None:
    own_redis.start()
    clock = FakeClock()
    store, _ = await _attached(own_redis.url, clock, lease=5)
    try:
        clock.advance(10)  # long past the process's start: leases are judged at once
        assert await sweep_once(store) == []  # learns the server's run_id
        await asyncio.to_thread(own_redis.stop)
        await asyncio.to_thread(own_redis.start)  # no call failed meanwhile
        orphan = await _orphan(store, clock)
        with structlog.testing.capture_logs() as logs:
            assert await sweep_once(store) == []
        assert [entry["event"] for entry in logs if entry["event"].startswith("store.")] == [
            "store.restarted"
        ]
        clock.advance(5)
        assert await sweep_once(store) == [orphan]
    finally:
        await store.close()


async def test_a_redis_that_refuses_info_still_gets_swept(own_redis: RedisServer) -> None:
    own_redis.start()
    admin = aioredis.Redis.from_url(own_redis.url)
    await admin.execute_command("ACL", "SETUSER", "limited", "on", ">secret", "~*", "&*", "+@all", "-info")
    await admin.aclose()
    clock = FakeClock()
    url = f"redis://limited:secret@127.0.0.1:{own_redis.port}/0"
    store, reachability = await _attached(url, clock, lease=5)
    try:
        clock.advance(10)
        orphan = await _orphan(store, clock)
        assert await sweep_once(store) == [orphan]  # no restart detection, no lost sweep
        assert reachability.reachable
    finally:
        await store.close()


# -- the real processes -------------------------------------------------------------------------


class Upstream:
    """An aiohttp embeddings endpoint whose requests wait on a gate; counts arrivals."""

    def __init__(self) -> None:
        self.gate = asyncio.Event()
        self.arrived = 0
        self.enough = asyncio.Event()
        self.expect = 0

    async def embeddings(self, request: web.Request) -> web.Response:
        body = await request.json()
        self.arrived += 1
        if self.arrived >= self.expect:
            self.enough.set()
        await self.gate.wait()
        return web.json_response({"object": "list", "data": [{"embedding": [0.5]}], "echo": body["input"]})


class Proxy:
    """``bifrost-async serve`` as a subprocess, its JSON log lines in a temporary file."""

    def __init__(self, process: asyncio.subprocess.Process, url: str, log: Any) -> None:
        self.process, self.url, self.log = process, url, log

    def events(self, name: str | None = None) -> list[dict[str, Any]]:
        self.log.seek(0)
        lines = [json.loads(line) for line in self.log.read().splitlines() if line.startswith("{")]
        return [line for line in lines if name is None or line.get("event") == name]

    async def until_serving(self, client: httpx.AsyncClient) -> None:
        """Until the job service has started and the port accepts (uvicorn listens after its
        lifespan startup)."""
        await self.until_logged("async_jobs.started")
        async with asyncio.timeout(60):  # a bound on a hang
            while True:
                with contextlib.suppress(httpx.TransportError):
                    await client.get(f"{self.url}/healthz")
                    return
                await asyncio.sleep(0.02)

    async def until_logged(self, name: str, count: int = 1) -> list[dict[str, Any]]:
        async with asyncio.timeout(60):  # a bound on a hang
            while len(found := self.events(name)) < count:
                if self.process.returncode is not None:
                    raise AssertionError(f"the proxy exited:\n{self.events()}")
                await asyncio.sleep(0.02)
        return found


@pytest.fixture
async def start_proxy() -> AsyncIterator[Any]:
    started: list[Proxy] = []
    with contextlib.ExitStack() as files:

        async def start(*args: str, env_extra: dict[str, str] | None = None) -> Proxy:
            with socket.socket() as sock:  # bound here and handed over (--fd): nobody takes it
                sock.bind(("127.0.0.1", 0))
                port = sock.getsockname()[1]
                env = {k: v for k, v in os.environ.items() if not k.startswith("BIFROST_ASYNC_")}
                env.update(env_extra or {})
                log = files.enter_context(tempfile.TemporaryFile("w+"))  # closed by the ExitStack
                argv = [sys.executable, "-m", "bifrost_async", "serve", "--log-format", "json"]
                process = await asyncio.create_subprocess_exec(
                    *argv, "--fd", str(sock.fileno()), *args,
                    env=env, stdin=asyncio.subprocess.DEVNULL, stdout=log, stderr=log,
                    pass_fds=[sock.fileno()],
                )  # fmt: skip
            proxy = Proxy(process, f"http://127.0.0.1:{port}", log)
            started.append(proxy)
            return proxy

        yield start
        for proxy in started:
            if proxy.process.returncode is None:
                proxy.process.kill()
                await proxy.process.wait()


def _stamp(event: dict[str, Any]) -> float:
    return datetime.fromisoformat(event["timestamp"].replace("Z", "+00:00")).timestamp()


@pytest.mark.slow
@pytest.mark.parametrize("queue", ["local", "redis"])
async def test_jobs_running_through_a_redis_outage_all_complete(
    tmp_path: Path, aiohttp_server: Any, start_proxy: Any, queue: str
) -> None:
    """With the local queue and with the distributed one (whose entries' idle time also grows
    through the outage: no instance may take a live run over when Redis is back)."""
    redis = RedisServer(tmp_path / "redis", persistent=True)
    redis.start()
    try:
        await _outage_scenario(redis, aiohttp_server, start_proxy, queue)
    finally:
        redis.stop()


async def _outage_scenario(redis: RedisServer, aiohttp_server: Any, start_proxy: Any, queue: str) -> None:
    upstream = Upstream()
    app = web.Application()
    app.router.add_post("/v1/embeddings", upstream.embeddings)
    server = await aiohttp_server(app)
    options = [
        "--upstream", f"http://127.0.0.1:{server.port}", "--store", "redis",
        "--store-option", f"url={redis.url}", "--store-option", "sweep_interval=0.2",
        "--lease-seconds", str(LEASE), "--concurrency", "2", "--queue", queue,
    ]  # fmt: skip
    env = {"BIFROST_ASYNC_ENCRYPTION_KEY": generate_key()}
    proxies = [await start_proxy(*options, env_extra=env), await start_proxy(*options, env_extra=env)]
    jobs: dict[str, str] = {}  # id -> input
    async with httpx.AsyncClient(timeout=30) as client:
        for proxy in proxies:
            await proxy.until_serving(client)
        # three jobs on each: two run (the upstream holds them), one waits in the local queue
        for n in range(6):
            text = f"text {n}"
            submitted = await client.post(
                proxies[n % 2].url + "/v1/async/embeddings", json={"model": "m", "input": text}
            )
            assert submitted.status_code == 202, submitted.text
            jobs[submitted.json()["id"]] = text
        upstream.expect = 4
        await asyncio.wait_for(upstream.enough.wait(), 60)

        await asyncio.to_thread(redis.stop)  # SIGTERM: the append-only file keeps every write
        seen = [(await proxy.until_logged("store.unreachable"))[0] for proxy in proxies]
        refused = await client.post(
            proxies[0].url + "/v1/async/embeddings", json={"model": "m", "input": "x"}
        )
        assert refused.status_code == 503 and refused.headers["retry-after"], refused.text
        assert refused.json()["error"]["message"] and "extra_fields" in refused.json(), refused.text
        upstream.gate.set()  # the running jobs end during the outage; their results wait
        # the outage lasts three leases by the instances' own clocks (both saw it begin)
        await asyncio.sleep(max(0.0, max(_stamp(event) for event in seen) + 3 * LEASE - time.time()))
        await asyncio.to_thread(redis.start)  # same port, same data directory

        for job_id, text in jobs.items():
            polled = await client.get(f"{proxies[0].url}/v1/async/embeddings/{job_id}", params={"wait": 30})
            assert polled.status_code == 200, polled.text
            body = polled.json()
            assert body["status"] == "completed", body
            assert body["result"]["echo"] == text
    assert upstream.arrived == 6  # every job ran once: the queued ones after the outage
    for proxy in proxies:
        proxy.process.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(proxy.process.wait(), 60) in (0, -signal.SIGTERM)
    for proxy in proxies:
        back = proxy.events("store.reachable")
        assert len(proxy.events("store.unreachable")) == 1 and len(back) == 1, proxy.events()
        assert back[0]["outage_seconds"] >= 3 * LEASE, back
        assert not proxy.events("job.orphan_failed") and not proxy.events("job.outcome_lost")
        assert not proxy.events("job.reclaimed") and not proxy.events("job.duplicate_result_dropped")
    outages = [proxy.events("store.reachable")[0]["outage_seconds"] for proxy in proxies]
    print(f"{queue} queue: outage seen by both instances: {outages} s (lease {LEASE:g} s); 6 of 6 completed")
