"""The load generator: a separate process that talks HTTP/1.1 to 127.0.0.1 and reports JSON.

It reads one JSON command per line on stdin and answers one JSON line on stdout, so the
orchestrator (``bench/run.py``) keeps a single load process for a whole run. The client is a
minimal keep-alive HTTP/1.1 client on asyncio streams, written for speed: the servers measured
here answer tens of microseconds of work per request, and a heavier client (aiohttp, httpx) would
saturate its own core first and flatten every ratio towards 1. It only understands responses with
``Content-Length``, which every server under test sends.

Modes (field ``mode`` of a command):

- ``requests``: ``concurrency`` workers repeat one request for ``duration`` seconds after
  ``warmup``; reports requests/s and latency percentiles.
- ``jobs``: each worker submits, then polls the ``Location`` until the job is done (sleeping
  ``Retry-After`` capped to ``poll_cap`` seconds between polls, or, with ``long_poll``, asking the
  server to hold each poll with ``?wait=N``; with ``prefer_wait`` the submit itself carries
  ``Prefer: wait=N``); reports jobs/s and round-trip latency. With several ports, a job is
  submitted on one and polled on the next; with ``submit_first``, every job is submitted on the
  first port and polled on the ports in turn.
- ``upload``: ``count`` multipart uploads of ``size`` bytes, ``concurrency`` at a time; reports
  the latency of each upload (until its answer), then, with ``wait_done``, polls each job to the
  end outside the timing, so background work never overlaps the next measurement.
"""

from __future__ import annotations

import asyncio
import json
import statistics
import sys
import time
from collections.abc import Callable, Coroutine
from typing import Any

HOST = "127.0.0.1"
WRITE_CHUNK = 1024 * 1024


class HttpError(Exception):
    """The server answered something this client does not expect."""


class Connection:
    """One keep-alive HTTP/1.1 connection to ``127.0.0.1:port``."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def request(
        self,
        method: str,
        path: str,
        body: bytes | tuple[bytes, bytes, bytes] = b"",
        content_type: str = "",
        extra: str = "",
    ) -> tuple[int, dict[str, str], bytes]:
        """Send a request (``body`` may be ``(head, payload, tail)`` to avoid copying a large
        upload) and read the whole response; reconnects when the server closed the connection."""
        if self.writer is None or self.writer.is_closing():
            self.reader, self.writer = await asyncio.open_connection(HOST, self.port, limit=1 << 20)
        assert self.reader is not None and self.writer is not None
        parts = body if isinstance(body, tuple) else (body,)
        length = sum(len(part) for part in parts)
        head = f"{method} {path} HTTP/1.1\r\nhost: {HOST}:{self.port}\r\n{extra}"
        if method == "POST":
            head += f"content-length: {length}\r\n"
            if content_type:
                head += f"content-type: {content_type}\r\n"
        self.writer.write(head.encode() + b"\r\n")
        for part in parts:
            view = memoryview(part)
            for start in range(0, len(view), WRITE_CHUNK):
                self.writer.write(view[start : start + WRITE_CHUNK])
                if len(view) > WRITE_CHUNK:
                    await self.writer.drain()
        await self.writer.drain()
        raw = await self.reader.readuntil(b"\r\n\r\n")
        lines = raw.decode("latin-1").split("\r\n")
        status = int(lines[0].split(" ", 2)[1])
        headers: dict[str, str] = {}
        for line in lines[1:]:
            if line:
                name, _, value = line.partition(":")
                headers[name.strip().lower()] = value.strip()
        if "content-length" not in headers:
            raise HttpError(f"response without content-length (status {status})")
        payload = await self.reader.readexactly(int(headers["content-length"]))
        if headers.get("connection", "").lower() == "close":
            self.close()
        return status, headers, payload

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
        self.writer = None


def percentile(values: list[float], fraction: float) -> float:
    """Nearest-rank percentile of ``values`` (0 when empty)."""
    if not values:
        return 0.0
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(fraction * len(ordered)) - 1))
    return ordered[index]


def summary(latencies: list[float], duration: float, errors: int, **extra: Any) -> dict[str, Any]:
    return {
        "count": len(latencies),
        "rate": len(latencies) / duration if duration > 0 else 0.0,
        "p50_ms": percentile(latencies, 0.50) * 1000,
        "p99_ms": percentile(latencies, 0.99) * 1000,
        "mean_ms": (statistics.fmean(latencies) * 1000) if latencies else 0.0,
        "errors": errors,
        **extra,
    }


async def timed_window(
    spec: dict[str, Any], one: Callable[[int, Connection, list[Connection]], Coroutine[Any, Any, Any]]
) -> tuple[list[float], int, list[Any]]:
    """Run ``one`` in ``concurrency`` loops; keep the latencies of operations that started after
    the warm-up and ended inside the measured window."""
    ports: list[int] = spec["ports"]
    warmup, duration = float(spec.get("warmup", 0.5)), float(spec["duration"])
    start = time.perf_counter()
    window = (start + warmup, start + warmup + duration)
    latencies: list[float] = []
    extras: list[Any] = []
    errors = 0

    async def loop(worker: int) -> None:
        nonlocal errors
        conns = [Connection(port) for port in ports]
        n = worker
        try:
            while True:
                began = time.perf_counter()
                if began >= window[1]:
                    return
                try:
                    extra = await one(n, conns[n % len(conns)], conns)
                except (OSError, HttpError, asyncio.IncompleteReadError):
                    errors += 1
                    for conn in conns:
                        conn.close()
                    continue
                ended = time.perf_counter()
                if began >= window[0] and ended <= window[1]:
                    latencies.append(ended - began)
                    extras.append(extra)
                n += 1
        finally:
            for conn in conns:
                conn.close()

    await asyncio.gather(*(loop(w) for w in range(int(spec["concurrency"]))))
    return latencies, errors, extras


async def run_requests(spec: dict[str, Any]) -> dict[str, Any]:
    method, path = spec.get("method", "GET"), spec["path"]
    body = spec.get("body", "").encode()
    content_type = spec.get("content_type", "application/json" if body else "")
    expect = int(spec.get("expect", 200))

    async def one(_n: int, conn: Connection, _all: list[Connection]) -> None:
        status, _, _ = await conn.request(method, path, body, content_type)
        if status != expect:
            raise HttpError(f"status {status}")

    latencies, errors, _ = await timed_window(spec, one)
    return summary(latencies, float(spec["duration"]), errors)


async def poll_until_done(
    conn: Connection, location: str, retry_after: float, cap: float, long_poll: float = 0
) -> int:
    """Poll ``location`` until it answers 200 with a finished job; return how many polls. With
    ``long_poll`` each poll asks the server to hold it up to that long (``?wait=N``) and there is
    no sleep between polls."""
    polls = 0
    if long_poll:
        location += f"?wait={long_poll:g}"
    while True:
        if not long_poll:
            await asyncio.sleep(min(retry_after, cap))
        status, headers, payload = await conn.request("GET", location)
        polls += 1
        if status == 200:
            if json.loads(payload).get("status") != "completed":
                raise HttpError(f"job ended {payload[:200]!r}")
            return polls
        if status != 202:
            raise HttpError(f"poll answered {status}")
        retry_after = float(headers.get("retry-after", retry_after))


async def run_jobs(spec: dict[str, Any]) -> dict[str, Any]:
    path, body = spec["path"], spec["body"].encode()
    cap = float(spec.get("poll_cap", 0.005))
    long_poll = float(spec.get("long_poll", 0))
    prefer = f"prefer: wait={long_poll:g}\r\n" if spec.get("prefer_wait") else ""

    submit_first = bool(spec.get("submit_first"))

    async def one(n: int, conn: Connection, conns: list[Connection]) -> int:
        submitter = conns[0] if submit_first else conn
        status, headers, payload = await submitter.request("POST", path, body, "application/json", prefer)
        if status == 200 and prefer and json.loads(payload).get("status") == "completed":
            return 0  # the submit itself waited for the end (Prefer: wait)
        if status not in (200, 202):
            raise HttpError(f"submit answered {status}")
        poller = conns[(n + 1) % len(conns)]  # another process, when there are several
        retry_after = float(headers.get("retry-after", 1))
        return await poll_until_done(poller, headers["location"], retry_after, cap, long_poll)

    latencies, errors, polls = await timed_window(spec, one)
    per_job = statistics.fmean(polls) if polls else 0.0
    return summary(latencies, float(spec["duration"]), errors, polls_per_job=per_job)


def multipart(size: int, model: str = "openai/whisper-1") -> tuple[tuple[bytes, bytes, bytes], str]:
    """A transcription upload of ``size`` file bytes, as ``(head, payload, tail)`` and its type."""
    boundary = "benchboundary7d1f0c"
    head = (
        f'--{boundary}\r\ncontent-disposition: form-data; name="model"\r\n\r\n{model}\r\n'
        f'--{boundary}\r\ncontent-disposition: form-data; name="file"; filename="clip.wav"\r\n'
        "content-type: audio/wav\r\n\r\n"
    ).encode()
    tail = f"\r\n--{boundary}--\r\n".encode()
    return (head, b"\x00" * size, tail), f"multipart/form-data; boundary={boundary}"


async def run_upload(spec: dict[str, Any]) -> dict[str, Any]:
    port, path = spec["ports"][0], spec["path"]
    if spec.get("json_body") is not None:
        body: bytes | tuple[bytes, bytes, bytes] = spec["json_body"].encode()
        content_type = "application/json"
    else:
        body, content_type = multipart(int(spec["size"]))
    expect = int(spec.get("expect", 200))
    latencies: list[float] = []
    locations: list[str] = []
    semaphore = asyncio.Semaphore(int(spec.get("concurrency", 1)))

    async def one() -> None:
        async with semaphore:
            conn = Connection(port)
            try:
                began = time.perf_counter()
                status, headers, _ = await conn.request("POST", path, body, content_type)
                latencies.append(time.perf_counter() - began)
                if status != expect:
                    raise HttpError(f"upload answered {status}")
                if "location" in headers:
                    locations.append(headers["location"])
            finally:
                conn.close()

    started = time.perf_counter()
    await asyncio.gather(*(one() for _ in range(int(spec["count"]))))
    elapsed = time.perf_counter() - started
    if spec.get("wait_done"):
        conn = Connection(port)
        for location in locations:
            await poll_until_done(conn, location, 0.01, 0.01)
        conn.close()
    return summary(latencies, elapsed, 0, max_ms=max(latencies, default=0.0) * 1000)


MODES = {"requests": run_requests, "jobs": run_jobs, "upload": run_upload}


def main() -> None:
    """Serve commands from stdin until it closes."""
    for line in sys.stdin:
        if not line.strip():
            continue
        spec = json.loads(line)
        try:
            result = asyncio.run(MODES[spec["mode"]](spec))
        except Exception as exc:
            result = {"error": f"{type(exc).__name__}: {exc}"}
        sys.stdout.write(json.dumps(result) + "\n")
        sys.stdout.flush()


if __name__ == "__main__":
    main()
