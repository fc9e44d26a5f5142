"""Two real ``bifrost-async serve`` processes share one real PostgreSQL: a job submitted to A is
polled, long-polled and cancelled on B; a SIGKILL of A while it runs jobs fails them as
``worker_lost`` (on a poll of B, and by B's sweep for the one nobody polls); a PostgreSQL restart
gives 503 with ``Retry-After`` while it is down and the service recovers by itself.

The upstream is an aiohttp server in this test process whose chat endpoint blocks until the test
releases its token, so the test decides when a job ends, or kills A while it runs, without
relying on timing."""

from __future__ import annotations

import asyncio
import signal
import time
from collections import defaultdict
from typing import Any

import asyncpg
import httpx
import pytest
from aiohttp import web
from tests.proxy_support import run_proxy

from bifrost_async_postgres.server import PostgresServer

SUBMIT = "/v1/async/chat/completions"
#: Seconds the sweep waits between rounds in the servers (a store option).
SWEEP = 1
#: Bound on anything that should happen promptly; only a lost wake-up or a stuck job reaches it.
PROMPT = 30.0
#: The servers' --lease-seconds: a SIGKILLed server's jobs are orphans about this long after.
LEASE = 4.0


class Gates:
    """Per token: set when the upstream starts it, set by the test to let it answer, and set
    when the proxy hung up on it (a cancel)."""

    def __init__(self) -> None:
        self.started: defaultdict[str, asyncio.Event] = defaultdict(asyncio.Event)
        self.release: defaultdict[str, asyncio.Event] = defaultdict(asyncio.Event)
        self.hung_up: defaultdict[str, asyncio.Event] = defaultdict(asyncio.Event)

    def app(self) -> web.Application:
        async def chat(request: web.Request) -> web.Response:
            token = (await request.json())["messages"][0]["content"]
            self.started[token].set()
            try:
                await self.release[token].wait()
            except asyncio.CancelledError:  # the proxy closed the connection
                self.hung_up[token].set()
                raise
            return web.json_response({"token": token})

        app = web.Application()
        app.router.add_post("/v1/chat/completions", chat)
        return app


async def submit(client: httpx.AsyncClient, server: Any, token: str) -> str:
    body = {"model": "openai/gpt-4o-mini", "messages": [{"role": "user", "content": token}]}
    response = await client.post(f"{server.url}{SUBMIT}", json=body)
    assert response.status_code == 202, response.text
    return str(response.json()["id"])


async def final(client: httpx.AsyncClient, server: Any, job_id: str, deadline: float) -> dict[str, Any]:
    """Long-poll ``server`` until the job has ended (bounded); its body."""
    end = time.monotonic() + deadline
    while True:
        response = await client.get(f"{server.url}{SUBMIT}/{job_id}", params={"wait": "5"})
        assert response.status_code in (200, 202), response.text
        if response.status_code == 200:
            body: dict[str, Any] = response.json()
            return body
        assert time.monotonic() < end, f"job {job_id} still {response.json()['status']} after {deadline} s"


async def stored_status(url: str, schema: str, job_id: str) -> str | None:
    conn = await asyncpg.connect(url)
    try:
        status = await conn.fetchval(f'SELECT status FROM "{schema}".jobs WHERE id = $1', job_id)
    finally:
        await conn.close()
    return None if status is None else str(status)


@pytest.mark.slow
async def test_two_servers_share_jobs_survive_a_killed_worker_and_a_postgres_restart(
    aiohttp_server: Any, own_postgres: PostgresServer
) -> None:
    own_postgres.start()
    gates = Gates()
    upstream = await aiohttp_server(gates.app())  # test servers cancel handlers on hang-up
    schema = "two"
    args = ["--store", "postgres", "--store-option", f"schema={schema}", "--lease-seconds", str(LEASE)]
    args += ["--store-option", f"sweep_interval={SWEEP}", "--owner-secret", "same-on-both"]
    env = {"BIFROST_ASYNC_POSTGRES_URL": own_postgres.url}  # the URL through the environment
    target = f"http://127.0.0.1:{upstream.port}"
    async with (
        run_proxy(target, *args, env=env) as a,
        run_proxy(target, *args, env=env) as b,
        httpx.AsyncClient(timeout=60) as client,
    ):
        # 1. Submitted to A, seen running on B; a long-poll parked on B wakes when A finishes it.
        first = await submit(client, a, "t1")
        await asyncio.wait_for(gates.started["t1"].wait(), PROMPT)
        running = await client.get(f"{b.url}{SUBMIT}/{first}")
        assert running.status_code == 202 and running.json()["status"] == "processing"
        parked = asyncio.create_task(client.get(f"{b.url}{SUBMIT}/{first}", params={"wait": "50"}))
        # give it time to park (the store tests prove the parked case deterministically; if it has
        # not parked yet it reads the finished job, which is right too, only less telling)
        await asyncio.sleep(0.2)
        gates.release["t1"].set()
        woke = await asyncio.wait_for(parked, PROMPT)
        assert woke.status_code == 200, woke.text
        assert woke.json()["status"] == "completed" and woke.json()["result"] == {"token": "t1"}

        # 2. Cancelled on B while A runs it: A learns through NOTIFY and hangs up on the upstream.
        second = await submit(client, a, "t2")
        await asyncio.wait_for(gates.started["t2"].wait(), PROMPT)
        asked = time.monotonic()
        cancelled = await client.delete(f"{b.url}{SUBMIT}/{second}")
        assert cancelled.status_code == 200, cancelled.text
        assert cancelled.json()["error"]["error"]["code"] == "job_cancelled"
        await asyncio.wait_for(gates.hung_up["t2"].wait(), PROMPT)
        print(f"\ncancel on B reached the upstream of A after {(time.monotonic() - asked) * 1000:.0f} ms")
        seen_on_a = await client.get(f"{a.url}{SUBMIT}/{second}")
        assert seen_on_a.status_code == 200 and seen_on_a.json()["status_code"] == 499

        # 3. A is killed while it runs two jobs: one is polled on B, the other nobody polls.
        polled, unpolled = await submit(client, a, "t3"), await submit(client, a, "t4")
        for token in ("t3", "t4"):
            await asyncio.wait_for(gates.started[token].wait(), PROMPT)
        a.process.send_signal(signal.SIGKILL)
        await a.process.wait()
        killed = time.monotonic()
        lost = await final(client, b, polled, deadline=LEASE + PROMPT)
        polled_after = time.monotonic() - killed
        assert lost["status"] == "failed" and lost["status_code"] == 500
        assert lost["error"]["error"]["code"] == "worker_lost"
        end = time.monotonic() + LEASE + SWEEP + PROMPT
        while await stored_status(own_postgres.url, schema, unpolled) != "failed":  # the sweep, on B
            assert time.monotonic() < end, "the sweep did not fail the unpolled orphan"
            await asyncio.sleep(0.2)
        swept_after = time.monotonic() - killed
        assert (await final(client, b, unpolled, PROMPT))["error"]["error"]["code"] == "worker_lost"
        print(f"\norphan failed {polled_after:.2f} s after SIGKILL on poll, {swept_after:.2f} s by the sweep")

        # 4. PostgreSQL restarts: B answers 503 with Retry-After while it is down, then recovers.
        own_postgres.stop()
        down = await client.post(f"{b.url}{SUBMIT}", json={"model": "m", "messages": [{"content": "x"}]})
        assert down.status_code == 503 and down.headers["retry-after"] == "1", down.text
        assert (await client.get(f"{b.url}{SUBMIT}/{first}")).status_code == 503
        own_postgres.start()
        gates.release["t5"].set()
        after = await submit(client, b, "t5")
        assert (await final(client, b, after, PROMPT))["result"] == {"token": "t5"}
        assert (await client.get(f"{b.url}{SUBMIT}/{first}")).json()["result"] == {"token": "t1"}
