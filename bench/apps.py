"""The apps the benchmarks serve, each in its own uvicorn process (``--factory bench.apps:NAME``).

``combined`` serves one trivial Starlette app two ways in the same process: under ``/bare`` the
app itself, everywhere else the app wrapped by :class:`AsyncJobsMiddleware`. A/B comparisons
therefore share the process, the event loop and the warm caches; the only difference is the
middleware. Its store comes from the environment: ``BENCH_STORE`` (``memory``, ``redis``,
``sqlite`` or ``postgres``), ``BENCH_REDIS_URL`` (and ``BENCH_REDIS_PREFIX``, default ``bench:``),
``BENCH_SQLITE_PATH`` and ``BENCH_POSTGRES_URL``.
``bare`` is the app alone (the upstream of benchmark 9), ``hold_once`` the same with a request
that hangs once (the upstream of benchmark 10).
"""

from __future__ import annotations

import asyncio
import json
import os
from typing import Any

from starlette.applications import Starlette
from starlette.datastructures import UploadFile
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from bifrost_async import AsyncJobsMiddleware
from bifrost_async.proxy.logsetup import configure_logging

BARE_PREFIX = "/bare"
#: A ~1 KB JSON answer, for the memory benchmark's "1 KB results".
KB_TEXT = "x" * 1000


def embedding_result(model: str) -> dict[str, Any]:
    """The trivial work: a fixed tiny embedding, the same in every server of the benchmarks."""
    return {
        "object": "list",
        "model": model,
        "data": [{"object": "embedding", "index": 0, "embedding": [0.1]}],
    }


async def ping(request: Request) -> Response:
    return Response(b"pong", media_type="text/plain")


async def embeddings(request: Request) -> Response:
    body = json.loads(await request.body())
    return JSONResponse(embedding_result(str(body.get("model"))))


async def chat(request: Request) -> Response:
    body = json.loads(await request.body())
    return JSONResponse({"model": str(body.get("model")), "text": KB_TEXT})


async def transcriptions(request: Request) -> Response:
    """Read the whole upload, as a real transcription endpoint would, and report its size."""
    total = 0
    async with request.form(max_part_size=1024 * 1024 * 1024) as form:
        upload = form.get("file")
        if isinstance(upload, UploadFile):
            while chunk := await upload.read(1024 * 1024):
                total += len(chunk)
    return JSONResponse({"text": f"heard {total} bytes"})


def bare() -> Starlette:
    """The synchronous app: a non-async route and three trivial inference endpoints."""
    return Starlette(
        routes=[
            Route("/ping", ping),
            Route("/v1/embeddings", embeddings, methods=["POST"]),
            Route("/v1/chat/completions", chat, methods=["POST"]),
            Route("/v1/audio/transcriptions", transcriptions, methods=["POST"]),
        ]
    )


#: The model that makes :func:`hold_once` hold a request (see there).
HOLD_MODEL = "bench/hold-once"
#: How long :func:`hold_once` holds at most (a bound on a forgotten request, not a timing).
HOLD_SECONDS = 600.0


def hold_once() -> Starlette:
    """The bench upstream with a request that hangs, for benchmark 10 (re-delivery after a kill).

    ``POST /v1/embeddings`` with ``"model": "bench/hold-once"`` is held (never answered, up to
    :data:`HOLD_SECONDS`) the first time its ``input`` is seen, and answered at once every later
    time: the first attempt of a job blocks in the instance that runs it; its re-delivery, on
    another instance, completes. ``GET /arrivals/{input}`` answers how many times that input
    arrived. Every other model is answered at once, as by :func:`bare`.
    """
    arrivals: dict[str, int] = {}

    async def held_embeddings(request: Request) -> Response:
        body = json.loads(await request.body())
        if body.get("model") == HOLD_MODEL:
            key = str(body.get("input"))
            arrivals[key] = arrivals.get(key, 0) + 1
            if arrivals[key] == 1:
                await asyncio.sleep(HOLD_SECONDS)
        return JSONResponse(embedding_result(str(body.get("model"))))

    async def arrived(request: Request) -> Response:
        return JSONResponse({"arrivals": arrivals.get(request.path_params["key"], 0)})

    return Starlette(
        routes=[
            Route("/ping", ping),
            Route("/v1/embeddings", held_embeddings, methods=["POST"]),
            Route("/arrivals/{key}", arrived),
        ]
    )


def middleware_options() -> dict[str, Any]:
    """Middleware options from the environment (store, Redis URL, shared owner secret)."""
    # Far more jobs than one run creates (the default 10,000 would fill up and answer 503).
    # One load generator is one owner: its shares would cap it at half the service (off here).
    options: dict[str, Any] = {
        "owner_secret": "bench-secret",
        "max_jobs": 10_000_000,
        "owner_max_jobs": 0,
        "owner_queue_size": 0,
    }
    if os.environ.get("BENCH_STORE", "memory") == "redis":
        options["store"] = "redis"
        prefix = os.environ.get("BENCH_REDIS_PREFIX", "bench:")
        options["store_options"] = {"url": os.environ["BENCH_REDIS_URL"], "prefix": prefix}
    if os.environ.get("BENCH_STORE") == "sqlite":
        options["store"] = "sqlite"
        options["store_options"] = {"path": os.environ["BENCH_SQLITE_PATH"]}
    if os.environ.get("BENCH_STORE", "memory") == "postgres":
        options["store"] = "postgres"
        options["store_options"] = {"url": os.environ["BENCH_POSTGRES_URL"], "schema": "bench"}
    return options


def combined() -> Any:
    """``/bare/...`` goes to the app itself; everything else through the middleware."""
    configure_logging(level=os.environ.get("BENCH_LOG_LEVEL", "warning"), format="json")
    app = bare()
    wrapped = AsyncJobsMiddleware(app, **middleware_options())

    async def dispatch(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "http" and scope["path"].startswith(BARE_PREFIX):
            scope = dict(scope, path=scope["path"][len(BARE_PREFIX) :])
            await app(scope, receive, send)
            return
        await wrapped(scope, receive, send)

    return dispatch
