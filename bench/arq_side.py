"""The usual alternative, for benchmark 6: a Starlette endpoint that enqueues to an arq worker.

``web`` is the ASGI factory (``POST /enqueue`` answers 202 with the job id and a ``Location``,
``GET /status/{id}`` answers 202 until the result is there, then 200 with it), served by uvicorn
like our servers; ``python bench/arq_side.py`` runs the arq worker doing the same trivial work.
Both read ``BENCH_REDIS_URL``. The worker's ``poll_delay`` is lowered from arq's 0.5 s to 5 ms, the
load generator's poll cap, so arq is not slowed by a default nobody would keep for this.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from arq import create_pool
from arq.connections import ArqRedis, RedisSettings
from arq.jobs import Job
from arq.worker import Worker
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

sys.path.append(str(Path(__file__).resolve().parent.parent))  # after PYTHONPATH

from bench.apps import embedding_result

POLL_DELAY = 0.005


def settings() -> RedisSettings:
    return RedisSettings.from_dsn(os.environ["BENCH_REDIS_URL"])


async def work(ctx: dict[str, Any], body: dict[str, Any]) -> dict[str, Any]:
    """The same trivial work as the benchmarks' embeddings endpoint."""
    return embedding_result(str(body.get("model")))


async def ping(request: Request) -> Response:
    return Response(b"pong", media_type="text/plain")


async def enqueue(request: Request) -> Response:
    body = json.loads(await request.body())
    pool: ArqRedis = request.app.state.pool
    job = await pool.enqueue_job("work", body)
    assert job is not None
    return JSONResponse(
        {"id": job.job_id, "status": "pending"},
        status_code=202,
        headers={"Location": f"/status/{job.job_id}", "Retry-After": "1"},
    )


async def status(request: Request) -> Response:
    job = Job(request.path_params["job_id"], request.app.state.pool)
    info = await job.result_info()
    if info is None:
        state = await job.status()
        return JSONResponse(
            {"id": job.job_id, "status": state.value}, status_code=202, headers={"Retry-After": "1"}
        )
    outcome = "completed" if info.success else "failed"
    return JSONResponse({"id": job.job_id, "status": outcome, "result": info.result}, status_code=200)


@contextlib.asynccontextmanager
async def lifespan(app: Starlette) -> AsyncIterator[None]:
    app.state.pool = await create_pool(settings())
    yield
    await app.state.pool.aclose()


def web() -> Starlette:
    return Starlette(
        routes=[
            Route("/bare/ping", ping),
            Route("/enqueue", enqueue, methods=["POST"]),
            Route("/status/{job_id}", status),
        ],
        lifespan=lifespan,
    )


def main() -> None:
    """Run the arq worker until SIGTERM; it logs warnings only, like our servers."""
    logging.basicConfig(level=logging.WARNING)
    Worker(functions=[work], redis_settings=settings(), poll_delay=POLL_DELAY).run()


if __name__ == "__main__":
    main()
