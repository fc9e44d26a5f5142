"""Clients that honour ``Retry-After``, on jobs that take seconds: ``python bench/retry_after.py``.

What a longer hint buys and what it costs (issue 16): ``CLIENTS`` clients each submit ``JOBS``
jobs one after the other to the middleware, in-process (direct ASGI calls, no HTTP), and poll each
job after sleeping exactly the ``Retry-After`` of the previous answer, until it is 200. The
endpoint sleeps a run time drawn from ``[LOW, HIGH]`` seconds (seeded), with ``concurrency`` 2, so
jobs also queue. Prints polls per job, the hints seen, and how late each client learned of its
job's end (the 200 poll's arrival minus the job's ``completed_at``: the latency a longer hint
adds). Real sleeps: about 30 s. Run it against two source snapshots with ``PYTHONPATH`` to
compare; options ``--clients N --jobs N --low S --high S``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import statistics
import sys
import time
from datetime import datetime
from pathlib import Path
from typing import Any

sys.path.append(str(Path(__file__).resolve().parent.parent))  # after PYTHONPATH

from bench.inprocess import call
from bifrost_async import AsyncJobsMiddleware
from bifrost_async.proxy.logsetup import configure_logging


def slow_app(low: float, high: float, seed: int) -> Any:
    rng = random.Random(seed)

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        await asyncio.sleep(rng.uniform(low, high))
        body = b'{"object":"list","data":[]}'
        headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    return app


async def client(mw: Any, jobs: int, polls: list[int], hints: list[int], late: list[float]) -> None:
    for _ in range(jobs):
        status, headers, _ = await call(mw, "POST", "/v1/async/embeddings")
        assert status == 202
        count = 0
        while True:
            hint = int(headers["retry-after"])
            hints.append(hint)
            await asyncio.sleep(hint)
            status, answer_headers, body = await call(mw, "GET", headers["location"])
            seen = time.time()
            count += 1
            if status == 200:
                ended = datetime.fromisoformat(json.loads(body)["completed_at"].replace("Z", "+00:00"))
                late.append(seen - ended.timestamp())
                break
            headers = {**headers, "retry-after": answer_headers["retry-after"]}
        polls.append(count)


async def main(args: argparse.Namespace) -> None:
    configure_logging(level="warning", format="json")
    mw = AsyncJobsMiddleware(slow_app(args.low, args.high, 16), concurrency=2, owner_queue_size=0)
    await mw.startup()
    polls: list[int] = []
    hints: list[int] = []
    late: list[float] = []
    began = time.perf_counter()
    await asyncio.gather(*(client(mw, args.jobs, polls, hints, late) for _ in range(args.clients)))
    took = time.perf_counter() - began
    await mw.shutdown()
    quartiles = statistics.quantiles(late, n=4)
    print(
        f"{len(polls)} jobs in {took:.1f} s: polls/job mean {statistics.mean(polls):.2f} "
        f"(max {max(polls)}); hints {min(hints)}-{max(hints)} s; learned of the end late by "
        f"median {quartiles[1]:.2f} s, p75 {quartiles[2]:.2f} s, max {max(late):.2f} s"
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--jobs", type=int, default=4)
    parser.add_argument("--low", type=float, default=2.0)
    parser.add_argument("--high", type=float, default=6.0)
    asyncio.run(main(parser.parse_args()))
