"""Test helpers: an observer plugin that lets tests wait on job events, and a stack builder."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import re
import socket
import threading
from collections import defaultdict
from collections.abc import Iterator
from typing import Any

import httpx
import uvicorn

from bifrost_async import AsyncJobsMiddleware, Job, hookimpl

from .apps import make_app

UUID4 = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}")
RFC3339 = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z")


class Recorder:
    """Observer plugin: records every job event and wakes tests waiting for one."""

    def __init__(self) -> None:
        self.events: list[tuple[str, Job]] = []
        self._signals: dict[tuple[str, str], asyncio.Event] = defaultdict(asyncio.Event)

    def _record(self, kind: str, job: Job) -> None:
        self.events.append((kind, dataclasses.replace(job)))
        self._signals[(kind, job.id)].set()

    @hookimpl
    def job_submitted(self, job: Job) -> None:
        self._record("submitted", job)

    @hookimpl
    def job_started(self, job: Job) -> None:
        self._record("started", job)

    @hookimpl
    def job_finished(self, job: Job) -> None:
        self._record("finished", job)

    async def wait(self, kind: str, job_id: str, timeout: float = 20) -> Job:
        await asyncio.wait_for(self._signals[(kind, job_id)].wait(), timeout)
        return next(job for k, job in reversed(self.events) if k == kind and job.id == job_id)

    def finished(self) -> dict[str, Job]:
        return {job.id: job for kind, job in self.events if kind == "finished"}


@dataclasses.dataclass
class Stack:
    """The test app, wrapped by the middleware, served by a real uvicorn."""

    url: str
    app: Any
    middleware: AsyncJobsMiddleware
    recorder: Recorder
    server: Any

    async def submit(self, client: httpx.AsyncClient, path: str, **kwargs: Any) -> httpx.Response:
        return await client.post(f"{self.url}/v1/async/{path}", **kwargs)

    async def finish(
        self, client: httpx.AsyncClient, path: str, response: httpx.Response, **kwargs: Any
    ) -> httpx.Response:
        """Wait until the submitted job has finished (by its hook), then poll it once."""
        assert response.status_code == 202, response.text
        job_id = response.json()["id"]
        await self.recorder.wait("finished", job_id)
        return await client.get(f"{self.url}/v1/async/{path}/{job_id}", **kwargs)


async def build_stack(serve: Any, *, app: Any = None, plugins: tuple[Any, ...] = (), **options: Any) -> Stack:
    app = app if app is not None else make_app()
    recorder = Recorder()
    middleware = AsyncJobsMiddleware(app, plugins=[recorder, *plugins], **options)
    server = await serve(middleware)
    return Stack(server.url, app, middleware, recorder, server)


@contextlib.contextmanager
def served_in_thread(app: Any) -> Iterator[str]:
    """``app`` on uvicorn in a thread of its own, for callers with a blocking client
    (schemathesis), which the test's own event loop could not answer; yields its base URL.

    The keep-alive outlasts the run, so the client never reuses a connection as it is closed."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on", timeout_keep_alive=300))
    thread = threading.Thread(target=lambda: asyncio.run(server.serve(sockets=[sock])), daemon=True)
    thread.start()
    started = threading.Event()
    while not started.wait(0.01):  # uvicorn has no ready callback; its flag flips once it listens
        if server.started:
            started.set()
        elif not thread.is_alive():
            raise RuntimeError("uvicorn exited before it started")
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        thread.join(30)
        sock.close()
