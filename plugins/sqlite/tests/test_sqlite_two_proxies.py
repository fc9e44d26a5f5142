"""Two real ``bifrost-async serve`` processes on one SQLite file, in front of a real aiohttp
upstream: a job submitted to A is polled, long-polled and cancelled on B; a SIGKILL of A fails
its running jobs as ``worker_lost`` (on B's poll, and by B's sweep for the one nobody polls); and
``serve --workers 2 --store sqlite`` serves from two worker processes on one port."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlite_proxies import SUBMIT, GatedUpstream, Proxy, final, proxies, stored_status, submit

#: ``--lease-seconds`` of the proxies: a killed worker's job is failed once its lease runs out, at
#: most this long after the kill. A worker renews every LEASE / 3, so a process stalled for ~2/3 of
#: it while running a job (a loaded machine) would have that job failed by the other: kept well
#: above such stalls. Set BIFROST_TEST_LEASE to raise it on a slower machine.
LEASE = float(os.environ.get("BIFROST_TEST_LEASE", "4"))
#: Seconds allowed on top, for a loaded machine.
SLACK = 20.0


@pytest.fixture
async def upstream(aiohttp_server: Any) -> tuple[GatedUpstream, str]:
    gated = GatedUpstream()
    server = await aiohttp_server(gated.app())
    return gated, f"http://127.0.0.1:{server.port}"


@pytest.mark.slow
async def test_two_proxies_share_jobs_long_polls_cancels_and_survive_a_killed_one(
    upstream: tuple[GatedUpstream, str], tmp_path: Path
) -> None:
    gated, url = upstream
    db = tmp_path / "jobs.db"
    async with (
        proxies(url, db, "--store-option", "sweep_interval=1", "--lease-seconds", str(LEASE)) as (a, b),
        httpx.AsyncClient(timeout=60) as client,
    ):
        # 1. Submitted to A, seen processing on B; B's long-poll wakes when A finishes it.
        first = await submit(client, a, "t1")
        await gated.wait_started("t1")
        polled = await client.get(f"{b.url}{SUBMIT}/{first}")
        assert polled.status_code == 202 and polled.json()["status"] == "processing"
        long_poll = asyncio.create_task(client.get(f"{b.url}{SUBMIT}/{first}", params={"wait": 30}))
        await asyncio.sleep(0.2)  # let the long-poll reach B (not needed for correctness)
        released = time.monotonic()
        gated.let_go("t1")
        # bounded far below the long-poll's 30 s: only the cross-process wake-up ends it in time
        done = await asyncio.wait_for(long_poll, 15)
        woke = time.monotonic() - released
        assert done.status_code == 200, done.text
        assert done.json()["status"] == "completed" and done.json()["result"]["token"] == "t1"

        # 2. Cancelled on B while it runs on A: A stops the upstream request.
        second = await submit(client, a, "t2")
        await gated.wait_started("t2")
        cancelled = await client.delete(f"{b.url}{SUBMIT}/{second}")
        assert cancelled.status_code == 200, cancelled.text
        assert cancelled.json()["status_code"] == 499 and cancelled.json()["error"]["type"] == "cancelled"
        await asyncio.wait_for(gated.cancelled["t2"].wait(), 15)
        seen = (await client.get(f"{a.url}{SUBMIT}/{second}")).json()
        assert seen["status"] == "failed" and seen["error"]["error"]["code"] == "job_cancelled"

        # 3. A is killed while it runs two jobs: B's poll fails one, B's sweep the other.
        polled_id, unpolled_id = await submit(client, a, "t3"), await submit(client, a, "t4")
        await gated.wait_started("t3")
        await gated.wait_started("t4")
        a.process.send_signal(signal.SIGKILL)
        await a.process.wait()
        killed = time.monotonic()
        lost = await final(client, b, polled_id, deadline=LEASE + SLACK)
        polled_after = time.monotonic() - killed
        assert lost["status"] == "failed" and lost["status_code"] == 500
        assert lost["error"]["error"]["code"] == "worker_lost"
        while stored_status(db, unpolled_id) != "failed":
            assert time.monotonic() - killed < LEASE + SLACK, "the sweep did not fail the orphan"
            await asyncio.sleep(0.2)
        swept_after = time.monotonic() - killed
        swept = (await client.get(f"{b.url}{SUBMIT}/{unpolled_id}")).json()
        assert swept["error"]["error"]["code"] == "worker_lost"

        # 4. B still takes and runs jobs on its own.
        gated.let_go("t5")
        after = await submit(client, b, "t5")
        assert (await final(client, b, after, deadline=30))["result"]["token"] == "t5"
    print(f"\nlong-poll on B woke {woke:.3f} s after A's upstream answered; after SIGKILL of A its jobs")
    print(f"failed {polled_after:.2f} s later (B's poll), {swept_after:.2f} s (B's sweep); lease {LEASE} s")


def started_workers(proxy: Proxy) -> set[str]:
    """The worker processes that have started their middleware (and so a store on the file)."""
    return {event["worker"] for event in proxy.events() if event.get("event") == "async_jobs.started"}


@pytest.mark.slow
async def test_serve_workers_2_with_sqlite(upstream: tuple[GatedUpstream, str], tmp_path: Path) -> None:
    gated, url = upstream
    tokens = [f"w{n}" for n in range(12)]
    for token in tokens:
        gated.let_go(token)
    async with proxies(url, tmp_path / "jobs.db", "--workers", "2", count=1) as (proxy,):
        # the port answers once one worker is up; wait for the second (slow to spawn on a busy machine)
        deadline = time.monotonic() + 60
        while len(started_workers(proxy)) < 2:
            assert time.monotonic() < deadline, proxy.output()
            await asyncio.sleep(0.05)
        # a fresh connection per request, so the kernel may spread them over both workers' accepts
        async with httpx.AsyncClient(timeout=60, limits=httpx.Limits(max_keepalive_connections=0)) as client:
            ids = [await submit(client, proxy, token) for token in tokens]
            for job_id, token in zip(ids, tokens, strict=True):
                assert (await final(client, proxy, job_id, deadline=30))["result"]["token"] == token
        assert "sqlite_store.unavailable" not in proxy.output()
        served = [event["worker"] for event in proxy.events() if event.get("event") == "job.submitted"]
    print(f"\nsubmits per worker: { {worker: served.count(worker) for worker in set(served)} }")
