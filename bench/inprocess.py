"""The job machinery without HTTP: ``python bench/inprocess.py [N] [--profile]``.

Calls the ASGI apps directly in one process (no sockets, no uvicorn): N calls of the trivial
endpoint on the bare app, then N jobs through the middleware (submit, run by the runner, one poll
each), then N polls of one finished job, then N jobs submitted with ``Prefer: wait``, then N polls
each of a running and of a queued job (``--unfinished-only``: only those); prints microseconds
per call, per job and per poll. The
difference is what the job layer itself costs, apart from the extra HTTP requests a job needs.
``--profile`` prints cProfile's top functions for the jobs part.
"""

from __future__ import annotations

import asyncio
import cProfile
import json
import pstats
import sys
import time
from pathlib import Path
from typing import Any

sys.path.append(str(Path(__file__).resolve().parent.parent))  # after PYTHONPATH

from bench.apps import bare, middleware_options
from bench.harness import EMBED_BODY
from bifrost_async import AsyncJobsMiddleware
from bifrost_async.proxy.logsetup import configure_logging

BODY = EMBED_BODY.encode()


def scope(method: str, path: str) -> dict[str, Any]:
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(BODY)).encode())]
    return {
        "type": "http",
        "method": method,
        "path": path,
        "raw_path": path.encode(),
        "headers": headers if method == "POST" else [],
        "query_string": b"",
        "root_path": "",
        "scheme": "http",
        "http_version": "1.1",
        "server": ("127.0.0.1", 80),
        "client": ("127.0.0.1", 5000),
    }


async def call(app: Any, method: str, path: str) -> tuple[int, dict[str, str], bytes]:
    answer: dict[str, Any] = {"body": b""}

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": BODY if method == "POST" else b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            answer["status"] = message["status"]
            answer["headers"] = {k.decode(): v.decode() for k, v in message["headers"]}
        else:
            answer["body"] += message.get("body", b"")

    await app(scope(method, path), receive, send)
    return answer["status"], answer["headers"], answer["body"]


async def sync_calls(app: Any, n: int) -> float:
    began = time.perf_counter()
    for _ in range(n):
        status, _, _ = await call(app, "POST", "/v1/embeddings")
        assert status == 200
    return (time.perf_counter() - began) / n


async def jobs(mw: AsyncJobsMiddleware, n: int, batch: int = 16) -> tuple[float, float]:
    """Seconds per job: wall clock, and this process's CPU time (less swayed by other load on a
    shared machine, since time waiting for a core is not counted)."""
    began, began_cpu = time.perf_counter(), time.process_time()
    for start in range(0, n, batch):
        answers = await asyncio.gather(
            *(call(mw, "POST", "/v1/async/embeddings") for _ in range(min(batch, n - start)))
        )
        assert mw.runner is not None
        while mw.runner.queued or mw.runner.running:  # noqa: ASYNC110 - the runner has no event to await
            await asyncio.sleep(0)
        for _, headers, _ in answers:
            status, _, body = await call(mw, "GET", headers["location"])
            assert status == 200 and json.loads(body)["status"] == "completed", body
    return (time.perf_counter() - began) / n, (time.process_time() - began_cpu) / n


async def prefer_jobs(mw: AsyncJobsMiddleware, n: int, batch: int = 16) -> float:
    """CPU seconds per job submitted with ``Prefer: wait=10`` (one request per job, answered
    with the finished job). ``receive`` behaves as a server's does: the body once, then it
    blocks until the response has been sent, then ``http.disconnect``."""

    async def submit() -> None:
        sent = asyncio.Event()
        answer: dict[str, Any] = {}
        messages = [{"type": "http.request", "body": BODY, "more_body": False}]

        async def receive() -> dict[str, Any]:
            if messages:
                return messages.pop()
            await sent.wait()
            return {"type": "http.disconnect"}

        async def send(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                answer["status"] = message["status"]
            elif not message.get("more_body", False):
                sent.set()

        request = scope("POST", "/v1/async/embeddings")
        request["headers"] = [*request["headers"], (b"prefer", b"wait=10")]
        await mw(request, receive, send)
        assert answer["status"] == 200, answer

    began = time.process_time()
    for start in range(0, n, batch):
        await asyncio.gather(*(submit() for _ in range(min(batch, n - start))))
    return (time.process_time() - began) / n


async def polls(mw: AsyncJobsMiddleware, n: int) -> float:
    """Seconds per poll of one finished job (the answer unchanged): the best of 5 batches of
    ``n // 5`` polls, since single batches swing with the machine's other load."""
    _, headers, _ = await call(mw, "POST", "/v1/async/embeddings")
    assert mw.runner is not None
    while mw.runner.queued or mw.runner.running:  # noqa: ASYNC110 - the runner has no event to await
        await asyncio.sleep(0)
    best = float("inf")
    for _ in range(5):
        began = time.perf_counter()
        for _ in range(max(1, n // 5)):
            status, _, _ = await call(mw, "GET", headers["location"])
            assert status == 200
        best = min(best, (time.perf_counter() - began) / max(1, n // 5))
    return best


async def unfinished_polls(n: int) -> tuple[float, float]:
    """Seconds per poll of a running job and of a queued one (the 202 with ``Retry-After``):
    one worker held by an endpoint that never answers, pacing off, best of 5 batches each."""
    release = asyncio.Event()

    async def held(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await release.wait()

    mw = AsyncJobsMiddleware(held, **{**middleware_options(), "concurrency": 1, "poll_pacing": 0})
    await mw.startup()
    assert mw.runner is not None
    _, running, _ = await call(mw, "POST", "/v1/async/embeddings")
    while not mw.runner.running:  # noqa: ASYNC110 - the runner has no event to await
        await asyncio.sleep(0)
    _, queued, _ = await call(mw, "POST", "/v1/async/embeddings")
    figures = []
    for location in (running["location"], queued["location"]):
        best = float("inf")
        for _ in range(5):
            began = time.perf_counter()
            for _ in range(max(1, n // 5)):
                status, _, _ = await call(mw, "GET", location)
                assert status == 202
            best = min(best, (time.perf_counter() - began) / max(1, n // 5))
        figures.append(best)
    release.set()
    await mw.shutdown()
    return figures[0], figures[1]


async def main(n: int, profile: bool) -> None:
    configure_logging(level="warning", format="json")
    if "--unfinished-only" in sys.argv:
        running, queued = await unfinished_polls(n)
        print(f"poll of a running job, in-process: {running * 1e6:.1f} µs")
        print(f"poll of a queued job, in-process: {queued * 1e6:.1f} µs")
        return
    app = bare()
    mw = AsyncJobsMiddleware(app, **middleware_options())
    await mw.startup()
    await sync_calls(app, 200)  # warm up both paths
    await jobs(mw, 200)
    per_call = await sync_calls(app, n)
    profiler = cProfile.Profile() if profile else None
    if profiler:
        profiler.enable()
    per_job, cpu_per_job = await jobs(mw, n)
    if profiler:
        profiler.disable()
    per_poll = await polls(mw, n)
    per_prefer = await prefer_jobs(mw, n)
    await mw.shutdown()
    print(f"sync call of the endpoint, in-process: {per_call * 1e6:.0f} µs")
    print(f"job (submit + run + one poll), in-process: {per_job * 1e6:.0f} µs ({per_job / per_call:.1f}x)")
    print(f"job, CPU time of this process: {cpu_per_job * 1e6:.0f} µs")
    print(f"job with Prefer: wait (one request), CPU time of this process: {per_prefer * 1e6:.0f} µs")
    print(f"poll of a finished job, in-process: {per_poll * 1e6:.1f} µs")
    running, queued = await unfinished_polls(n)
    print(f"poll of a running job, in-process: {running * 1e6:.1f} µs")
    print(f"poll of a queued job, in-process: {queued * 1e6:.1f} µs")
    if profiler:
        pstats.Stats(profiler).sort_stats("tottime").print_stats(25)


if __name__ == "__main__":
    args = [arg for arg in sys.argv[1:] if not arg.startswith("--")]
    asyncio.run(main(int(args[0]) if args else 5000, "--profile" in sys.argv))
