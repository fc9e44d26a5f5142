"""Helpers for the end-to-end tests: the real ``bifrost-async serve`` CLI as subprocesses on one
SQLite file, in front of a real aiohttp upstream whose answers the test releases one by one."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import socket
import sqlite3
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
from aiohttp import web

SUBMIT = "/v1/async/chat/completions"
START_DEADLINE = 30.0


class GatedUpstream:
    """A synchronous chat endpoint: a request whose message is ``token`` sets ``started[token]``,
    then answers only once the test sets ``release[token]``; a request whose client went away
    (the job was cancelled) sets ``cancelled[token]``."""

    def __init__(self) -> None:
        self.started: dict[str, asyncio.Event] = {}
        self.release: dict[str, asyncio.Event] = {}
        self.cancelled: dict[str, asyncio.Event] = {}

    def _events(self, token: str) -> tuple[asyncio.Event, asyncio.Event, asyncio.Event]:
        for table in (self.started, self.release, self.cancelled):
            table.setdefault(token, asyncio.Event())
        return self.started[token], self.release[token], self.cancelled[token]

    async def chat(self, request: web.Request) -> web.Response:
        token = str((await request.json())["messages"][0]["content"])
        started, release, cancelled = self._events(token)
        started.set()
        try:
            await release.wait()
        except asyncio.CancelledError:  # aiohttp's test server cancels handlers on disconnect
            cancelled.set()
            raise
        return web.json_response({"id": "chatcmpl-1", "token": token})

    async def health(self, _: web.Request) -> web.Response:
        return web.Response(text="ok")

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/v1/chat/completions", self.chat)
        app.router.add_get("/", self.health)
        return app

    async def wait_started(self, token: str, deadline: float = 15.0) -> None:
        await asyncio.wait_for(self._events(token)[0].wait(), deadline)

    def let_go(self, token: str) -> None:
        self._events(token)[1].set()


class Proxy:
    """``python -m bifrost_async serve`` on a port bound here and handed over (``--fd``)."""

    def __init__(self, process: asyncio.subprocess.Process, url: str, log: Any) -> None:
        self.process, self.url, self.log = process, url, log

    def output(self) -> str:
        self.log.flush()
        return Path(self.log.name).read_text()

    def events(self) -> list[dict[str, Any]]:
        """The JSON log lines written so far."""
        return [json.loads(line) for line in self.output().splitlines() if line.startswith("{")]

    async def ready(self, path: str = "/readyz") -> None:
        deadline = time.monotonic() + START_DEADLINE
        async with httpx.AsyncClient(timeout=2) as client:
            while True:
                if self.process.returncode is not None:
                    raise AssertionError(f"proxy exited with {self.process.returncode}:\n{self.output()}")
                with contextlib.suppress(httpx.TransportError):
                    if (await client.get(f"{self.url}{path}")).status_code == 200:
                        return
                if time.monotonic() > deadline:
                    raise AssertionError(f"proxy not ready within {START_DEADLINE} s:\n{self.output()}")
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.process.wait(), 0.05)

    async def stop(self) -> None:
        if self.process.returncode is None:
            self.process.terminate()
            try:
                await asyncio.wait_for(self.process.wait(), 20)
            except TimeoutError:
                self.process.kill()
                await self.process.wait()


@contextlib.asynccontextmanager
async def proxies(
    upstream: str, db: Path, *extra: str, count: int = 2, ready: str = "/readyz"
) -> AsyncIterator[list[Proxy]]:
    """``count`` proxies on the SQLite file ``db``, answering 200 on ``ready``; stopped (SIGTERM)
    afterwards."""
    started: list[Proxy] = []
    with contextlib.ExitStack() as files:
        try:
            for _ in range(count):
                with socket.socket() as sock:
                    sock.bind(("127.0.0.1", 0))
                    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                    argv = [sys.executable, "-m", "bifrost_async", "serve", "--log-format", "json"]
                    argv += ["--fd", str(sock.fileno()), "--upstream", upstream, "--store", "sqlite"]
                    argv += ["--store-option", f"path={db}", *extra]
                    env = {k: v for k, v in os.environ.items() if not k.startswith("BIFROST_ASYNC_")}
                    log = files.enter_context(tempfile.NamedTemporaryFile("w+", suffix=".log"))
                    process = await asyncio.create_subprocess_exec(
                        *argv,
                        env=env,
                        stdin=asyncio.subprocess.DEVNULL,
                        stdout=log,
                        stderr=log,
                        pass_fds=[sock.fileno()],
                    )
                    started.append(Proxy(process, f"http://127.0.0.1:{sock.getsockname()[1]}", log))
            for proxy in started:
                await proxy.ready(ready)
            yield started
        finally:
            for proxy in started:
                await proxy.stop()


def submit_body(token: str) -> dict[str, Any]:
    return {"model": "openai/gpt-4o-mini", "messages": [{"role": "user", "content": token}]}


async def submit(client: httpx.AsyncClient, proxy: Proxy, token: str) -> str:
    response = await client.post(f"{proxy.url}{SUBMIT}", json=submit_body(token))
    assert response.status_code == 202, response.text
    return str(response.json()["id"])


async def final(client: httpx.AsyncClient, proxy: Proxy, job_id: str, deadline: float) -> dict[str, Any]:
    """Long-poll ``proxy`` until the job has ended (bounded by ``deadline`` seconds); its body."""
    end = time.monotonic() + deadline
    while True:
        response = await client.get(f"{proxy.url}{SUBMIT}/{job_id}", params={"wait": 5})
        assert response.status_code in (200, 202), response.text
        if response.status_code == 200:
            body: dict[str, Any] = response.json()
            return body
        assert time.monotonic() < end, f"job {job_id} still {response.json()['status']} after {deadline} s"


def stored_status(db: Path, job_id: str) -> str | None:
    """The job's status as the file holds it (read by a connection of the test's own)."""
    with contextlib.closing(sqlite3.connect(db, timeout=10)) as raw:
        row = raw.execute("SELECT status FROM jobs WHERE id = ?", (job_id,)).fetchone()
    return None if row is None else str(row[0])
