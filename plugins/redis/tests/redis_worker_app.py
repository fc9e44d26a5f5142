"""The app each server process of the two-process test runs (``uvicorn redis_worker_app:app``).

Its chat endpoint blocks until the test allows it to answer: it writes ``started-<token>`` (with
its pid) into ``$BIFROST_TEST_GATES`` and waits for ``release-<token>`` there, so the test decides
when a job ends, or kills the process while the job is still running, without relying on timing.
The Redis URL comes from ``$BIFROST_ASYNC_REDIS_URL``, as a deployment would set it; the lease
and the sweep interval from ``$BIFROST_TEST_LEASE`` and ``$BIFROST_TEST_SWEEP``, which the test
(``test_redis_two_processes``, the one place that decides them) always sets.

``GET /probe/parked/{job_id}`` tells the test how many reads of that job this process's store
finished while a waiter was registered: ``wait_for_job`` registers, reads, then sleeps until it
is woken, so once such a read of a job that cannot end yet has returned, a long-poll is parked.
A wait that takes the job the poll has just read (``Waiters.recall``) instead of reading it
again counts too: it too registered first and then sleeps at once.
"""

from __future__ import annotations

import asyncio
import os
from collections import Counter
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from bifrost_async import AsyncJobsMiddleware, hookimpl
from bifrost_async.jobs import Job
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

GATES = Path(os.environ["BIFROST_TEST_GATES"])


def mark(name: str) -> None:
    """Write this process's pid into the gate file ``name`` atomically: the test reads a gate as
    soon as it exists, so the file must appear with its content (write a temporary, then rename)."""
    temporary = GATES / f".{name}.{os.getpid()}.tmp"
    temporary.write_text(str(os.getpid()))
    os.replace(temporary, GATES / name)


async def chat(request: Request) -> Response:
    token = (await request.json())["messages"][0]["content"]
    mark(f"started-{token}")
    # The gate is a file because the test is another process; an asyncio.Event cannot cross that.
    try:
        while not (GATES / f"release-{token}").exists():  # noqa: ASYNC110
            await asyncio.sleep(0.02)
    except asyncio.CancelledError:  # the job was cancelled (DELETE, on any process)
        mark(f"cancelled-{token}")
        raise
    return JSONResponse({"token": token, "pid": os.getpid()})


async def healthz(request: Request) -> Response:
    return PlainTextResponse("ok")


class Probe:
    """Counts, per job id, the reads this process's store finished while a waiter was registered,
    and the waits that took a remembered job instead of such a read. A process's waiters are its
    long-polls and its runner's watch on each job it runs, so on a process that runs no job
    every such read is a long-poll's."""

    def __init__(self) -> None:
        self.parked_reads: Counter[str] = Counter()

    @hookimpl
    def async_jobs_startup(self, middleware: AsyncJobsMiddleware) -> None:
        store: Any = middleware.store
        read: Callable[[str], Awaitable[Job | None]] = store.get

        async def get(job_id: str) -> Job | None:
            job = await read(job_id)
            if len(store.waiters):
                self.parked_reads[job_id] += 1
            return job

        store.get = get  # the instance attribute: wait() looks up self.get on every call
        waiters: Any = store.waiters
        recall: Callable[[str], Job | None] = waiters.recall

        def recalled(job_id: str) -> Job | None:
            job = recall(job_id)
            if job is not None:
                self.parked_reads[job_id] += 1
            return job

        waiters.recall = recalled  # wait_for_job looks it up on every wait

    async def parked(self, request: Request) -> Response:
        return JSONResponse(self.parked_reads[request.path_params["job_id"]])


probe = Probe()


app = AsyncJobsMiddleware(
    Starlette(
        routes=[
            Route("/v1/chat/completions", chat, methods=["POST"]),
            Route("/healthz", healthz),
            Route("/probe/parked/{job_id}", probe.parked),
        ]
    ),
    plugins=[probe],
    store="redis",
    store_options={"sweep_interval": os.environ["BIFROST_TEST_SWEEP"]},
    lease_seconds=float(os.environ["BIFROST_TEST_LEASE"]),
    shutdown_grace=2,
)
