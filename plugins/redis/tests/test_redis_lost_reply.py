"""A lost Redis reply must not turn a write that landed into a failure (issue 11 item 4).

A small asyncio TCP proxy sits between the store and a real redis-server. Armed with a status, it
forwards the next compare-and-set write of that status, lets Redis execute it, and then closes the
connection instead of passing on the success reply: redis-py sees a dropped connection and
retries the command, and the retry finds the job already written. The job must still go on as if
nothing happened: started, finished, announced to the ``job_finished`` observers (webhooks,
metrics), and a cancel must stay a cancel, not become a delete.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import httpx
import pytest
from bifrost_async import AsyncJobsMiddleware, Job, hookimpl
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

SUBMIT = "/v1/async/chat/completions"
BODY = {"model": "openai/gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}
OWNER = {"Authorization": "Bearer sk-test-lost-reply"}


class ReplyDropper:
    """A TCP proxy to Redis that drops exactly one success reply to an armed write.

    :meth:`arm` names a job status; the next ``EVALSHA`` that carries it as an argument (a
    script's status, sent as a bulk string ``$n\\r\\n<status>\\r\\n``) is forwarded, and if
    Redis answers ``:1`` (written), both connections are closed before the reply reaches the
    client. Any other reply (``NOSCRIPT`` before the script is loaded, ``:0``) passes through.
    :meth:`arm_claim` does the same for the idempotency claim script, whose success is nil."""

    def __init__(self, redis_port: int) -> None:
        self.redis_port = redis_port
        self.port = 0
        self._marker: bytes | None = None
        self._success: tuple[bytes, ...] = (b":1\r\n",)
        self.dropped = asyncio.Event()
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    def arm(self, status: str) -> None:
        self._marker, self._success = f"\r\n{status}\r\n".encode(), (b":1\r\n",)

    def arm_claim(self) -> None:
        # the claim key; success is "not held before": nil, in RESP2 or (redis-py 8) RESP3
        self._marker, self._success = b"idem:", (b"$-1\r\n", b"_\r\n")

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._connection, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _connection(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        server_r, server_w = await asyncio.open_connection("127.0.0.1", self.redis_port)
        pending = {"drop": False}

        async def upstream() -> None:
            while data := await client_r.read(65536):
                marker = self._marker
                if marker is not None and b"EVALSHA" in data.upper() and marker in data:
                    pending["drop"] = True  # set before forwarding: the reply cannot come first
                server_w.write(data)
                await server_w.drain()
            server_w.close()

        async def downstream() -> None:
            while data := await server_r.read(65536):
                if pending["drop"]:
                    pending["drop"] = False
                    if data.startswith(self._success) and self._marker is not None:
                        self._marker = None  # exactly one reply is lost
                        self.dropped.set()
                        client_w.transport.abort()
                        server_w.transport.abort()
                        return
                client_w.write(data)
                await client_w.drain()
            client_w.close()

        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        try:
            with contextlib.suppress(ConnectionError, asyncio.CancelledError):
                await asyncio.gather(upstream(), downstream())
        finally:
            client_w.transport.abort()
            server_w.transport.abort()
            self._tasks.discard(task)


class Observer:
    """Records the hooks webhooks and metrics hang on, and wakes the test on a finish."""

    def __init__(self) -> None:
        self.started: list[str] = []
        self.finished: dict[str, Job] = {}
        self.finished_event = asyncio.Event()

    @hookimpl
    def job_started(self, job: Job) -> None:
        self.started.append(job.id)

    @hookimpl
    def job_finished(self, job: Job) -> None:
        self.finished[job.id] = job
        self.finished_event.set()


@pytest.fixture
async def dropper(redis_url: str) -> AsyncIterator[ReplyDropper]:
    proxy = ReplyDropper(int(redis_url.rsplit(":", 1)[1].split("/")[0]))
    await proxy.start()
    yield proxy
    await proxy.close()


@pytest.fixture
async def stack(
    dropper: ReplyDropper,
) -> AsyncIterator[Callable[[Callable[[Request], Awaitable[Any]]], tuple[httpx.AsyncClient, Observer]]]:
    opened: list[tuple[AsyncJobsMiddleware, httpx.AsyncClient]] = []

    def make(endpoint: Callable[[Request], Awaitable[Any]]) -> tuple[httpx.AsyncClient, Observer]:
        observer = Observer()
        app = Starlette(routes=[Route("/v1/chat/completions", endpoint, methods=["POST"])])
        url = f"redis://127.0.0.1:{dropper.port}/0"
        middleware = AsyncJobsMiddleware(
            app, store="redis", store_options={"url": url, "sweep_interval": 0}, plugins=[observer]
        )
        client = httpx.AsyncClient(transport=httpx.ASGITransport(app=middleware), base_url="http://test")
        opened.append((middleware, client))
        return client, observer

    yield make
    for middleware, client in opened:
        await client.aclose()
        await middleware.shutdown()


async def answer(request: Request) -> JSONResponse:
    await request.body()
    return JSONResponse({"choices": [{"message": {"content": "hello"}}]})


@pytest.mark.parametrize("lost", ["pending", "processing", "completed"])
async def test_a_lost_reply_to_a_write_that_landed_is_still_success(
    lost: str, dropper: ReplyDropper, stack: Callable[..., tuple[httpx.AsyncClient, Observer]]
) -> None:
    """``pending``: the create's reply is lost (already idempotent, kept as a guard);
    ``processing``: the start's reply is lost (before the fix the runner gave the running job
    up); ``completed``: the outcome's reply is lost (before, no observer heard of the end)."""
    client, observer = stack(answer)
    dropper.arm(lost)
    submitted = await client.post(SUBMIT, json=BODY, headers=OWNER)
    assert submitted.status_code == 202, submitted.text
    job_id = submitted.json()["id"]
    # bounded far below the 30 s lease: only a normal finish can end this wait in time
    await asyncio.wait_for(observer.finished_event.wait(), 20)
    assert dropper.dropped.is_set()
    assert observer.started == [job_id]
    assert observer.finished[job_id].status_code == 200
    polled = await client.get(f"{SUBMIT}/{job_id}", headers=OWNER)
    assert polled.status_code == 200, polled.text
    assert polled.json()["status"] == "completed"
    assert polled.json()["result"]["choices"][0]["message"]["content"] == "hello"


async def test_a_cancel_whose_reply_is_lost_stays_a_cancel(
    dropper: ReplyDropper, stack: Callable[..., tuple[httpx.AsyncClient, Observer]]
) -> None:
    """Before the fix, the retried cancel reported failure, the handler re-read the job (now
    terminal: its own cancel) and deleted it: the owner's job vanished, no observer heard."""
    release = asyncio.Event()
    entered = asyncio.Event()

    async def held(request: Request) -> JSONResponse:
        await request.body()
        entered.set()
        await release.wait()
        return JSONResponse({"choices": []})

    client, observer = stack(held)
    submitted = await client.post(SUBMIT, json=BODY, headers=OWNER)
    assert submitted.status_code == 202, submitted.text
    job_id = submitted.json()["id"]
    await asyncio.wait_for(entered.wait(), 20)
    dropper.arm("failed")
    cancelled = await client.delete(f"{SUBMIT}/{job_id}", headers=OWNER)
    release.set()
    assert dropper.dropped.is_set()
    assert cancelled.status_code == 200, cancelled.text
    assert observer.finished[job_id].error is not None
    polled = await client.get(f"{SUBMIT}/{job_id}", headers=OWNER)
    assert polled.status_code == 200, polled.text  # still there: cancelled, not deleted
    assert polled.json()["status"] == "failed"
    assert "job_cancelled" in str(polled.json()["error"])


async def test_a_lost_reply_to_an_idempotency_claim_still_accepts_the_submit(
    dropper: ReplyDropper, stack: Callable[..., tuple[httpx.AsyncClient, Observer]]
) -> None:
    """Before the fix, the retried claim found the claim it had just taken, for its own job id,
    and the submit answered 409 "still being accepted" (and every retry too, until it lapsed)."""
    client, observer = stack(answer)
    dropper.arm_claim()
    headers = {**OWNER, "Idempotency-Key": "lost-claim-reply"}
    submitted = await client.post(SUBMIT, json=BODY, headers=headers)
    assert dropper.dropped.is_set()
    assert submitted.status_code == 202, submitted.text
    job_id = submitted.json()["id"]
    await asyncio.wait_for(observer.finished_event.wait(), 20)
    again = await client.post(SUBMIT, json=BODY, headers=headers)  # the key now names this job
    assert again.json()["id"] == job_id
