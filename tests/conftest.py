"""Shared fixtures: real uvicorn servers on ephemeral ports, in the test's event loop."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest
import uvicorn

from .webhook_support import Receiver

#: The ``start_example`` fixture: the bundled example scripts as real processes.
pytest_plugins = ["tests.example_support"]


class RunningServer:
    """A uvicorn server serving ``app`` on 127.0.0.1 and an ephemeral port."""

    def __init__(self, app: Any, **config: Any) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        # The server keeps idle connections longer than httpx's pools (5 s keepalive_expiry), so a
        # client never reuses a connection at the moment the server closes it (a ReadError).
        options = {"log_level": "warning", "lifespan": "on", "timeout_keep_alive": 30, **config}
        self.server = uvicorn.Server(uvicorn.Config(app, **options))
        self.task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self.task = asyncio.create_task(self.server.serve(sockets=[self.sock]))
        while not self.server.started:
            if self.task.done():
                self.task.result()
                raise RuntimeError("uvicorn exited before it started")
            await asyncio.sleep(0.01)

    async def stop(self) -> None:
        """Ask uvicorn to exit, as its SIGTERM handler does, and wait for lifespan shutdown."""
        self.server.should_exit = True
        if self.task is not None:
            await self.task
        self.sock.close()


@pytest.fixture
async def serve() -> AsyncIterator[Callable[..., Any]]:
    """``server = await serve(app, **uvicorn_options)`` starts a real server, stopped at teardown."""
    servers: list[RunningServer] = []

    async def start(app: Any, **config: Any) -> RunningServer:
        server = RunningServer(app, **config)
        await server.start()
        servers.append(server)
        return server

    yield start
    for server in reversed(servers):
        with contextlib.suppress(Exception):
            await server.stop()


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    """A real HTTP client (no ASGI shortcut)."""
    async with httpx.AsyncClient(timeout=30) as client:
        yield client


@pytest.fixture
async def receiver_factory() -> AsyncIterator[Any]:
    receivers: list[Receiver] = []

    async def make(statuses: list[int], **kwargs: Any) -> Receiver:
        receiver = Receiver(statuses, **kwargs)
        await receiver.start()
        receivers.append(receiver)
        return receiver

    yield make
    for receiver in receivers:
        assert receiver.runner is not None
        await receiver.runner.cleanup()
