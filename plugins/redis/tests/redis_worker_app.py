"""The app each server process of the two-process test runs (``uvicorn redis_worker_app:app``).

Its chat endpoint blocks until the test allows it to answer: it writes ``started-<token>`` (with
its pid) into ``$BIFROST_TEST_GATES`` and waits for ``release-<token>`` there, so the test decides
when a job ends, or kills the process while the job is still running, without relying on timing.
The Redis URL comes from ``$BIFROST_ASYNC_REDIS_URL``, as a deployment would set it.
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

from bifrost_async import AsyncJobsMiddleware
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

GATES = Path(os.environ["BIFROST_TEST_GATES"])


async def chat(request: Request) -> Response:
    token = (await request.json())["messages"][0]["content"]
    (GATES / f"started-{token}").write_text(str(os.getpid()))
    # The gate is a file because the test is another process; an asyncio.Event cannot cross that.
    try:
        while not (GATES / f"release-{token}").exists():  # noqa: ASYNC110
            await asyncio.sleep(0.02)
    except asyncio.CancelledError:  # the job was cancelled (DELETE, on any process)
        (GATES / f"cancelled-{token}").write_text(str(os.getpid()))
        raise
    return JSONResponse({"token": token, "pid": os.getpid()})


async def healthz(request: Request) -> Response:
    return PlainTextResponse("ok")


app = AsyncJobsMiddleware(
    Starlette(
        routes=[
            Route("/v1/chat/completions", chat, methods=["POST"]),
            Route("/healthz", healthz),
        ]
    ),
    store="redis",
    store_options={"sweep_interval": os.environ.get("BIFROST_TEST_SWEEP", "3")},
    lease_seconds=1.5,
    shutdown_grace=2,
)
