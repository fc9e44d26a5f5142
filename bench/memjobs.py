"""Bytes per stored job in the ``memory`` store, as RSS growth of this process (run as a child).

``python bench/memjobs.py MODE N`` prints JSON ``{"rss_before", "rss_after", "jobs", "per_job"}``:

- ``store``: N jobs written the way the runner writes them (create pending, update processing,
  update completed with the outcome of a ~1 KB JSON answer, built by the runner's own
  ``outcome_from_response`` and ``apply_outcome``), directly on a started store.
- ``results``: only the N parsed 1 KB results, kept in a list: the part of a job that is its result.
- ``runner``: N jobs submitted through the middleware's ASGI interface in-process and run by the
  runner against a trivial app answering ~1 KB of JSON (the whole path except the socket).

RSS is read from ``/proc/self/status`` after ``gc.collect()``, before and after.
"""

from __future__ import annotations

import asyncio
import gc
import json
import sys
import time
from pathlib import Path
from typing import Any

sys.path.append(str(Path(__file__).resolve().parent.parent))  # after PYTHONPATH

from bench.apps import KB_TEXT, bare
from bifrost_async import AsyncJobsMiddleware
from bifrost_async.builtin.memory import memory_store
from bifrost_async.core.outcome import CapturedResponse, apply_outcome, outcome_from_response
from bifrost_async.errors import model_extra_fields
from bifrost_async.jobs import Job, JobStatus, new_job_id
from bifrost_async.proxy.logsetup import configure_logging
from bifrost_async.store import StoreContext

MODEL = "openai/gpt-4o-mini"
BODY = json.dumps({"model": MODEL, "text": KB_TEXT}).encode()
HEADERS = [(b"content-type", b"application/json"), (b"content-length", str(len(BODY)).encode())]


def rss() -> int:
    gc.collect()
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS")


async def fill_store(n: int) -> Any:
    store = memory_store(StoreContext(clock=time.time, max_jobs=n + 1, options={}))
    await store.start()
    extra = model_extra_fields(MODEL, "chat_completion")
    for _ in range(n):
        now = time.time()
        job = Job(
            id=new_job_id(),
            request_id=new_job_id(),
            request_type="chat_completion",
            status=JobStatus.PENDING,
            created_at=now,
            ttl=3600,
            extra_fields=dict(extra),
            worker="bench-host:12345",
            lease_expires_at=now + 30,
        )
        await store.create(job)
        job.status, job.started_at = JobStatus.PROCESSING, now
        await store.update(job, expect=(JobStatus.PENDING,))
        apply_outcome(job, outcome_from_response(CapturedResponse(200, HEADERS, BODY), extra), now)
        await store.update(job, expect=(JobStatus.PROCESSING,))
    return store


async def keep_results(n: int) -> Any:
    return [json.loads(BODY) for _ in range(n)]


async def through_runner(n: int) -> Any:
    # one owner submits every job: its shares (half the bounds by default) are off here
    app = AsyncJobsMiddleware(bare(), max_jobs=n + 1, queue_size=1000, owner_max_jobs=0, owner_queue_size=0)
    await app.startup()
    assert app.runner is not None and app.store is not None
    scope = {
        "type": "http",
        "method": "POST",
        "path": "/v1/async/chat/completions",
        "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(BODY)).encode())],
        "query_string": b"",
        "root_path": "",
        "scheme": "http",
        "server": ("127.0.0.1", 80),
        "client": ("127.0.0.1", 5000),
    }

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": BODY, "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start" and message["status"] != 202:
            raise RuntimeError(f"submit answered {message['status']}")

    for start in range(0, n, 500):
        await asyncio.gather(*(app(dict(scope), receive, send) for _ in range(min(500, n - start))))
        while app.runner.queued or app.runner.running:  # noqa: ASYNC110 - polling the runner is the point
            await asyncio.sleep(0.001)
    return app


MODES = {"store": fill_store, "results": keep_results, "runner": through_runner}


async def main(mode: str, n: int) -> None:
    configure_logging(level="warning", format="json")  # the runner's info lines would cost time
    if mode == "runner":  # warm the code path first, so its one-time costs are not counted
        await through_runner(50)
    before = rss()
    kept = await MODES[mode](n)
    after = rss()
    print(json.dumps({"rss_before": before, "rss_after": after, "jobs": n, "per_job": (after - before) / n}))
    del kept


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], int(sys.argv[2])))
