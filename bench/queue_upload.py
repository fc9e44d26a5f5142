"""A 25 MB upload stored for the distributed queue: what it costs other Redis clients.

``python -m bench.queue_upload [ROUNDS]`` (default 5) starts a throw-away ``redis-server`` and a
second process that sends ``PING`` and ``GET`` of a small key back to back on its own connection,
recording each command's latency. Meanwhile this process, in turn:

- does nothing (``idle``: the baseline);
- stores a 25 MB request the way ``--queue redis`` does (``RedisRequests.save``: 100 ``RPUSH``
  of 256 KiB, then the sealed head), ``ROUNDS`` times (``pieces``);
- reads it back into a local spool (``RedisRequests.load``, 100 ``LINDEX``) (``load``);
- deletes it as the queue does when the job ends (``drop``: ``UNLINK``, freed in the background);
- for contrast, stores the same bytes as one ``SET`` (``one SET``) and deletes that with ``DEL``
  (``DEL one``), neither of which the queue does.

It prints, per phase, the prober's p50 / p99 / max latency, and the phase's own duration. Not part
of ``bench/run.py``: it measures Redis and the request storage alone, in process, no HTTP.
"""

from __future__ import annotations

import asyncio
import io
import multiprocessing
import os
import statistics
import sys
import time
from multiprocessing.connection import Connection
from typing import Any

import redis
import redis.asyncio as aioredis

from .harness import RedisServer

SIZE = 25 * 1000 * 1000


def probe(url: str, stop: Any, out: Connection) -> None:
    """Run in a second process: PING / GET latencies as (monotonic end, seconds) pairs."""
    client = redis.Redis.from_url(url)
    client.set("probe:small", b"x" * 100)
    samples: list[tuple[float, float]] = []
    commands = (lambda: client.ping(), lambda: client.get("probe:small"))
    n = 0
    while not stop.is_set():
        began = time.monotonic()
        commands[n % 2]()
        ended = time.monotonic()
        samples.append((ended, ended - began))
        n += 1
    out.send(samples)
    out.close()


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


async def phases(url: str, rounds: int) -> list[tuple[str, float, float]]:
    from bifrost_async_redis.requests import RedisRequests  # the plugin: optional for other benches

    from bifrost_async.core.sealing import generate_key
    from bifrost_async.queue import CapturedRequest, Keyring

    client = aioredis.Redis.from_url(url)
    requests = RedisRequests(client, prefix="bench:", keyring=Keyring.parse(generate_key()), ttl=600)
    body = os.urandom(SIZE)
    windows: list[tuple[str, float, float]] = []

    async def window(name: str, action: Any) -> None:
        began = time.monotonic()
        await action()
        windows.append((name, began, time.monotonic()))

    async def idle() -> None:
        await asyncio.sleep(1.0)

    for n in range(rounds):
        job_id = f"job-{n}"
        request = CapturedRequest(
            method="POST",
            path="/v1/audio/transcriptions",
            query_string=b"",
            headers=[(b"authorization", b"Bearer sk-secret"), (b"content-type", b"audio/wav")],
            body=io.BytesIO(body),
            body_size=SIZE,
        )

        async def save(job_id: str = job_id, request: CapturedRequest = request) -> None:
            await requests.save(job_id, request)

        async def load(job_id: str = job_id) -> None:
            loaded = await requests.load(job_id, memory_bytes=256 * 1024, spool_dir=None)
            loaded.close()

        async def one_set(n: int = n) -> None:
            await client.set(f"bench:one:{n}", body)

        async def drop(job_id: str = job_id) -> None:
            await requests.drop(job_id)

        async def delete(n: int = n) -> None:
            await client.delete(f"bench:one:{n}")

        await window("idle", idle)
        await window("pieces", save)
        await window("load", load)
        await window("drop", drop)
        await window("one SET", one_set)
        await window("DEL one", delete)
    await client.aclose()
    return windows


def main() -> None:
    rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 5
    server = RedisServer()
    try:
        stop = multiprocessing.Event()
        receive, send = multiprocessing.Pipe(duplex=False)
        prober = multiprocessing.Process(target=probe, args=(server.url, stop, send))
        prober.start()
        time.sleep(0.5)  # the prober's connection is up before the first window
        windows = asyncio.run(phases(server.url, rounds))
        stop.set()
        samples: list[tuple[float, float]] = receive.recv()
        prober.join()
    finally:
        server.stop()
    print(f"25 MB request, {rounds} rounds; prober latency (PING/GET on a second connection)")
    print(f"{'phase':<10} {'p50 ms':>8} {'p99 ms':>8} {'max ms':>8} {'samples':>8} {'phase ms (median)':>18}")
    for name in ("idle", "pieces", "load", "drop", "one SET", "DEL one"):
        spans = [(a, b) for n, a, b in windows if n == name]
        inside = [lat * 1000 for end, lat in samples if any(a <= end <= b for a, b in spans)]
        took = statistics.median((b - a) * 1000 for a, b in spans)
        print(
            f"{name:<10} {percentile(inside, 0.5):8.3f} {percentile(inside, 0.99):8.3f} "
            f"{max(inside):8.3f} {len(inside):8d} {took:18.1f}"
        )


if __name__ == "__main__":
    main()
