"""The other usual alternative, for benchmark 6: a Starlette endpoint that enqueues to a saq worker.

The same shape as ``bench/arq_side.py``: ``web`` is the ASGI factory (``POST /enqueue`` answers
202 with the job key and a ``Location``, ``GET /status/{key}`` answers 202 until the job is done,
then 200 with its result), served by uvicorn like our servers; ``python bench/saq_side.py`` runs
the saq worker doing the same trivial work. Both read ``BENCH_REDIS_URL``.

Settings, chosen so that saq is judged by what it does, not by a default nobody would keep here:

- saq's Redis queue dequeues with a blocking ``BLMOVE`` (``dequeue_timeout=0``: wait until a job
  arrives), so there is no poll delay to lower, unlike arq's ``poll_delay``; kept.
- ``concurrency`` (jobs the worker runs at once, one blocking dequeue each) is raised from 10 to
  ``WORKER_CONCURRENCY`` (64, the largest client count of the benchmark), so the worker's parallel
  dequeues never cap the rate.
- ``max_concurrent_ops`` (a semaphore on the queue's Redis operations in each process) is raised
  from 20 to 64 on both sides, for the same reason.
- The upkeep timers (abort check 1 s, schedule 1 s, sweep 60 s) are left: they are per second,
  not per job.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from saq import Queue, Worker
from saq.job import Status
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

sys.path.append(str(Path(__file__).resolve().parent.parent))  # after PYTHONPATH

from bench.apps import embedding_result

#: Jobs the saq worker runs at once (saq's default is 10).
WORKER_CONCURRENCY = 64
#: Concurrent Redis operations per queue object (saq's default is 20).
MAX_CONCURRENT_OPS = 64


def queue() -> Queue:
    """The saq queue on ``BENCH_REDIS_URL`` (its own key namespace, ``saq:bench:*``)."""
    return Queue.from_url(os.environ["BENCH_REDIS_URL"], name="bench", max_concurrent_ops=MAX_CONCURRENT_OPS)


async def work(ctx: dict[str, Any], *, body: dict[str, Any]) -> dict[str, Any]:
    """The same trivial work as the benchmarks' embeddings endpoint."""
    return embedding_result(str(body.get("model")))


async def ping(request: Request) -> Response:
    return Response(b"pong", media_type="text/plain")


async def enqueue(request: Request) -> Response:
    body = json.loads(await request.body())
    jobs: Queue = request.app.state.queue
    job = await jobs.enqueue("work", body=body)
    assert job is not None
    return JSONResponse(
        {"id": job.key, "status": "pending"},
        status_code=202,
        headers={"Location": f"/status/{job.key}", "Retry-After": "1"},
    )


async def status(request: Request) -> Response:
    jobs: Queue = request.app.state.queue
    key = request.path_params["key"]
    job = await jobs.job(key)
    if job is None:
        return JSONResponse({"error": {"message": "no such job"}}, status_code=404)
    if job.status == Status.COMPLETE:
        return JSONResponse({"id": key, "status": "completed", "result": job.result}, status_code=200)
    if job.status in (Status.FAILED, Status.ABORTED):
        return JSONResponse({"id": key, "status": "failed", "error": job.error}, status_code=200)
    return JSONResponse(
        {"id": key, "status": job.status.value}, status_code=202, headers={"Retry-After": "1"}
    )


@contextlib.asynccontextmanager
async def lifespan(app: Starlette) -> AsyncIterator[None]:
    app.state.queue = queue()
    await app.state.queue.connect()
    yield
    await app.state.queue.disconnect()


def web() -> Starlette:
    return Starlette(
        routes=[
            Route("/bare/ping", ping),
            Route("/enqueue", enqueue, methods=["POST"]),
            Route("/status/{key}", status),
        ],
        lifespan=lifespan,
    )


async def run_worker() -> None:
    """The saq worker until SIGTERM (saq's own signal handler stops it)."""
    jobs = queue()
    worker = Worker(jobs, functions=[work], concurrency=WORKER_CONCURRENCY)
    await jobs.connect()
    try:
        await worker.start()
    finally:
        await jobs.disconnect()


def main() -> None:
    """Run the saq worker; it logs warnings only, like our servers."""
    logging.basicConfig(level=logging.WARNING)
    asyncio.run(run_worker())


if __name__ == "__main__":
    main()
