"""Three real ``bifrost-async serve --store redis --queue redis`` processes in front of one real
aiohttp upstream, on one real redis-server: submits all go to one instance and all three run jobs;
an instance killed with SIGKILL while it runs jobs loses none (each is re-run elsewhere, the
upstream sees it twice); a rolling restart (SIGTERM, one instance at a time) under continuous
submits of jobs longer than the grace fails and loses none; a cancel sent to any instance stops
the run wherever it is.

The upstream lives in the test's event loop, so its gates are ``asyncio.Event``s: a job's upstream
request waits until the test releases its token, which decides when jobs end (never a sleep)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import socket
import sys
import time
from collections import Counter, defaultdict
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import IO, Any

import httpx
import pytest
import redis.asyncio as aioredis
from aiohttp import web
from redis_server import RedisServer

SUBMIT = "/v1/async/chat/completions"
KEY = "qqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqo"
#: The lease of every instance: a killed instance's runs are re-delivered this long after its
#: last renewal. BIFROST_TEST_LEASE raises it on a slow machine (every wait below follows).
LEASE = float(os.environ.get("BIFROST_TEST_LEASE", "3"))
SLACK = 30.0
CONCURRENCY = 2
pytestmark = pytest.mark.slow


class Upstream:
    """An aiohttp app whose chat endpoint logs each request and answers once its token is
    released (``release``); a request cut off (its instance died or handed it back) is logged."""

    def __init__(self) -> None:
        self.log: list[str] = []
        self.cut: list[str] = []
        self.gates: defaultdict[str, asyncio.Event] = defaultdict(asyncio.Event)
        self.arrived = asyncio.Condition()

    async def chat(self, request: web.Request) -> web.Response:
        token = (await request.json())["messages"][0]["content"]
        async with self.arrived:
            self.log.append(token)
            self.arrived.notify_all()
        try:
            await self.gates[token].wait()
        except asyncio.CancelledError:
            self.cut.append(token)
            raise
        return web.json_response({"token": token})

    def release(self, *tokens: str) -> None:
        for token in tokens:
            self.gates[token].set()

    async def seen(self, count: int, deadline: float = SLACK) -> None:
        """Until the upstream has received ``count`` requests in all."""
        async with self.arrived:
            await asyncio.wait_for(self.arrived.wait_for(lambda: len(self.log) >= count), deadline)


class Instance:
    """``python -m bifrost_async serve --store redis --queue redis`` on its own inherited socket."""

    def __init__(self, name: str, upstream: str, redis_url: str, logs: Path, grace: float) -> None:
        self.name, self.upstream, self.redis_url, self.logs, self.grace = (
            name,
            upstream,
            redis_url,
            logs,
            grace,
        )
        self.process: asyncio.subprocess.Process | None = None
        self.url = ""
        self._log: IO[str] | None = None

    async def start(self) -> None:
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{sock.getsockname()[1]}"
        argv = [sys.executable, "-m", "bifrost_async", "serve", "--fd", str(sock.fileno())]
        argv += ["--upstream", self.upstream, "--store", "redis", "--queue", "redis", "--log-format", "json"]
        argv += ["--concurrency", str(CONCURRENCY), "--lease-seconds", str(LEASE)]
        argv += ["--shutdown-grace", str(self.grace)]
        env = {k: v for k, v in os.environ.items() if not k.startswith("BIFROST_ASYNC_")}
        env |= {"BIFROST_ASYNC_REDIS_URL": self.redis_url, "BIFROST_ASYNC_ENCRYPTION_KEY": KEY}
        self._log = (self.logs / f"{self.name}-{time.monotonic_ns()}.log").open("w")
        with sock:
            self.process = await asyncio.create_subprocess_exec(
                *argv, env=env, stdin=asyncio.subprocess.DEVNULL, stdout=self._log, stderr=self._log,
                pass_fds=[sock.fileno()],
            )  # fmt: skip
        async with httpx.AsyncClient(timeout=2) as client:
            end = time.monotonic() + SLACK
            while True:
                if self.process.returncode is not None:
                    raise AssertionError(f"{self.name} exited: {Path(self._log.name).read_text()}")
                with contextlib.suppress(httpx.TransportError):
                    if (await client.get(self.url + "/healthz")).status_code == 200:
                        return
                assert time.monotonic() < end, f"{self.name} did not start"
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.process.wait(), 0.05)

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    async def signal(self, signum: int) -> None:
        """Send ``signum`` and wait for the process to exit."""
        assert self.process is not None
        if self.process.returncode is None:
            self.process.send_signal(signum)
            await asyncio.wait_for(self.process.wait(), SLACK)


@pytest.fixture
async def cluster(
    own_redis: RedisServer, tmp_path: Path
) -> AsyncIterator[tuple[Upstream, list[Instance], str]]:
    own_redis.start()
    upstream = Upstream()
    app = web.Application()
    app.router.add_post("/v1/chat/completions", upstream.chat)
    runner = web.AppRunner(app, shutdown_timeout=0.5, handler_cancellation=True)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    instances = [Instance(n, f"http://127.0.0.1:{port}", own_redis.url, tmp_path, grace=0.5) for n in "abc"]
    try:
        await asyncio.gather(*(instance.start() for instance in instances))
        yield upstream, instances, own_redis.url
    finally:
        for gate in upstream.gates.values():
            gate.set()
        for instance in instances:
            await instance.signal(signal.SIGKILL)
        await runner.cleanup()


async def submit(client: httpx.AsyncClient, instance: Instance, token: str) -> str:
    body = {"model": "m", "messages": [{"role": "user", "content": token}]}
    response = await client.post(instance.url + SUBMIT, json=body, headers={"Authorization": "Bearer sk-x"})
    assert response.status_code == 202, response.text
    return str(response.json()["id"])


async def final(client: httpx.AsyncClient, instance: Instance, job_id: str) -> dict[str, Any]:
    end = time.monotonic() + SLACK + 3 * LEASE
    while True:
        response = await client.get(
            f"{instance.url}{SUBMIT}/{job_id}", headers={"Authorization": "Bearer sk-x"}
        )
        if response.status_code == 200:
            body: dict[str, Any] = response.json()
            return body
        assert response.status_code == 202, response.text
        assert time.monotonic() < end, f"job {job_id} did not end: {response.text}"
        await asyncio.sleep(0.05)  # a poll interval, not a correctness wait


async def workers(redis_url: str, job_ids: list[str]) -> dict[str, str]:
    """Which process (``host:pid``) ran each job last, from the stored records."""
    client = aioredis.Redis.from_url(redis_url)
    try:
        records = [await client.hget(f"bifrost-async:job:{job_id}", "record") for job_id in job_ids]
    finally:
        await client.aclose()
    return {job_id: json.loads(raw)["worker"] for job_id, raw in zip(job_ids, records, strict=True) if raw}


async def until(check: Callable[[], Awaitable[bool]], what: str) -> None:
    end = time.monotonic() + SLACK
    while not await check():
        assert time.monotonic() < end, f"timed out waiting for {what}"
        await asyncio.sleep(0.05)


async def test_three_instances_share_the_work_and_a_killed_one_loses_nothing(
    cluster: tuple[Upstream, list[Instance], str],
) -> None:
    upstream, (a, b, c), redis_url = cluster
    async with httpx.AsyncClient(timeout=10) as client:
        # 1. Six gated jobs, all submitted to A: A runs two at once, so B and C take the rest.
        tokens = [f"split-{n}" for n in range(6)]
        ids = [await submit(client, a, token) for token in tokens]
        await upstream.seen(6)
        ran = await workers(redis_url, ids)
        split = Counter(worker.rsplit(":", 1)[1] for worker in ran.values())
        print(f"\nsplit of 6 jobs submitted to A: {dict(split)} (A={a.pid}, B={b.pid}, C={c.pid})")
        assert set(split) == {str(a.pid), str(b.pid), str(c.pid)}
        upstream.release(*tokens)
        for job_id in ids:
            assert (await final(client, a, job_id))["status"] == "completed"

        # 2. Six running and three queued; B is killed with its two running. None fails.
        tokens = [f"kill-{n}" for n in range(9)]
        ids = [await submit(client, a, token) for token in tokens]
        await upstream.seen(6 + 6)
        ran = await workers(redis_url, ids)
        on_b = [
            token
            for token, job_id in zip(tokens, ids, strict=True)
            if ran.get(job_id, "").endswith(f":{b.pid}")
        ]
        assert len(on_b) == CONCURRENCY, ran
        await b.signal(signal.SIGKILL)
        killed = time.monotonic()
        upstream.release(*tokens)
        results = [await final(client, c, job_id) for job_id in ids]
        redelivered = time.monotonic() - killed
        assert [r["status"] for r in results] == ["completed"] * 9, results
        assert [r["result"]["token"] for r in results] == tokens
        seen = Counter(upstream.log)
        assert all(seen[token] == 2 for token in on_b), seen  # B's runs were re-run elsewhere
        assert all(seen[token] == 1 for token in tokens if token not in on_b), seen
        print(f"SIGKILL -> B's re-delivered jobs completed in {redelivered:.2f} s (lease {LEASE:g} s)")


async def test_a_rolling_restart_under_load_fails_and_loses_nothing(
    cluster: tuple[Upstream, list[Instance], str],
) -> None:
    upstream, instances, _ = cluster
    submitted: list[tuple[str, str]] = []
    stop = asyncio.Event()

    async with httpx.AsyncClient(timeout=10) as client:

        async def keep_submitting() -> None:
            n = 0
            while not stop.is_set():
                live = [i for i in instances if i.process is not None and i.process.returncode is None]
                target = live[n % len(live)]
                with contextlib.suppress(httpx.TransportError, AssertionError):  # it is shutting down
                    submitted.append((f"roll-{n}", await submit(client, target, f"roll-{n}")))
                n += 1
                await asyncio.sleep(0.1)  # the pace of the load, not a correctness wait

        load = asyncio.create_task(keep_submitting())
        await upstream.seen(3)
        for index, instance in enumerate(instances):
            running_before = len(upstream.log)
            await instance.signal(signal.SIGTERM)  # running jobs outlast the grace: handed back
            replacement = Instance(
                f"{instance.name}2", instance.upstream, instance.redis_url, instance.logs, 0.5
            )
            await replacement.start()
            instances[index] = replacement
            await upstream.seen(running_before + 1)
        stop.set()
        await load
        upstream.release(*(token for token, _ in submitted))
        live = instances[0]
        results = {token: await final(client, live, job_id) for token, job_id in submitted}
    statuses = Counter(result["status"] for result in results.values())
    print(f"\nrolling restart: {len(submitted)} jobs, {dict(statuses)}, {len(upstream.cut)} runs handed back")
    assert statuses == {"completed": len(submitted)}, results
    assert all(result["result"]["token"] == token for token, result in results.items())
    assert upstream.cut  # some runs really were interrupted and run again


async def test_a_cancel_sent_to_any_instance_stops_the_run(
    cluster: tuple[Upstream, list[Instance], str],
) -> None:
    upstream, (a, b, c), redis_url = cluster
    async with httpx.AsyncClient(timeout=10) as client:
        ids = [await submit(client, a, f"cancel-{n}") for n in range(3)]
        await upstream.seen(3)
        ran = await workers(redis_url, ids)
        # cancel each through an instance other than the one running it
        for job_id in ids:
            other = next(i for i in (a, b, c) if not ran[job_id].endswith(f":{i.pid}"))
            response = await client.delete(
                f"{other.url}{SUBMIT}/{job_id}", headers={"Authorization": "Bearer sk-x"}
            )
            assert response.status_code == 200, response.text

        async def all_cut() -> bool:
            return len(upstream.cut) == 3

        await until(all_cut, "every run to be cut off")
        for job_id in ids:
            assert (await final(client, b, job_id))["status"] == "failed"
