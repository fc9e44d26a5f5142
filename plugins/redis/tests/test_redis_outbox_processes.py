"""Durable webhook deliveries with real processes: two ``bifrost-async serve --store redis``
instances on one real redis-server, a real aiohttp upstream and a real receiver. The instance
holding a delivery is SIGKILLed (during its back-off, or in the middle of an attempt); the
other delivers it, under the same ``webhook-id``, signed, with exactly one success in the
history; and a permanent 4xx ends the delivery on whichever instance gets it."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis.asyncio as aioredis
from aiohttp import web
from bifrost_async.builtin.webhooks.plugin import verify
from test_redis_cli_workers import Proxy, _until_ready, start_proxy, upstream
from tests.webhook_support import SECRET

pytestmark = pytest.mark.slow

__all__ = ["start_proxy", "upstream"]  # fixtures, imported for this module's tests

TOKEN = "operator-token-0123456789"
ADMIN = {"Authorization": f"Bearer {TOKEN}"}
OUTBOX = "bifrost-async:wh:outbox"
HANG = 0  # a scripted "status" that never answers


class ScriptedReceiver:
    """A receiver answering each job's attempts from that job's own script of statuses."""

    def __init__(self) -> None:
        self.scripts: dict[str, list[int]] = {}
        self.attempts: dict[str, list[dict[str, Any]]] = {}
        self.changed = asyncio.Event()
        self.runner: web.AppRunner | None = None
        self.url = ""

    async def handle(self, request: web.Request) -> web.Response:
        raw = await request.read()
        job_id = json.loads(raw)["data"]["job_id"]
        attempts = self.attempts.setdefault(job_id, [])
        script = self.scripts.get(job_id, [200])
        status = script[min(len(attempts), len(script) - 1)]
        attempts.append({"headers": dict(request.headers), "raw": raw, "status": status})
        self.changed.set()
        if status == HANG:
            await asyncio.Event().wait()  # cut off by the sender's death
        return web.Response(status=status)

    async def until(self, job_id: str, count: int) -> list[dict[str, Any]]:
        async with asyncio.timeout(60):
            while len(self.attempts.get(job_id, [])) < count:
                self.changed.clear()
                await self.changed.wait()
        return self.attempts[job_id]

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/hook", self.handle)
        self.runner = web.AppRunner(app, handler_cancellation=True)
        await self.runner.setup()
        await web.TCPSite(self.runner, "127.0.0.1", 0).start()
        self.url = f"http://127.0.0.1:{self.runner.addresses[0][1]}/hook"


@pytest.fixture
async def receiver() -> AsyncIterator[ScriptedReceiver]:
    held = ScriptedReceiver()
    await held.start()
    yield held
    assert held.runner is not None
    await held.runner.cleanup()


@pytest.fixture
def instance(
    start_proxy: Any, upstream: str, redis_url: str, receiver: ScriptedReceiver, tmp_path: Path
) -> Callable[[], Awaitable[Proxy]]:
    """Starts one instance (and waits until it serves): the same webhooks file, admin token and
    Redis for all; back-off 3 s, and an attempt silent for 2 s is taken over."""
    hooks = tmp_path / "webhooks.json"
    endpoint = {
        "url": receiver.url, "secret": SECRET, "allow_private_network": True,
        "retry_backoff_initial_seconds": 3, "retry_backoff_max_seconds": 3, "attempt_timeout_seconds": 120,
    }  # fmt: skip
    hooks.write_text(json.dumps({"billing": endpoint}))

    async def start() -> Proxy:
        proxy: Proxy = await start_proxy(
            "--upstream", upstream, "--store", "redis", "--store-option", f"url={redis_url}",
            "--store-option", "webhook_claim_idle=2", "--webhooks", str(hooks), "--admin-token", TOKEN,
        )  # fmt: skip
        async with httpx.AsyncClient(timeout=30) as http:
            await _until_ready(proxy, http, 1)
        return proxy

    return start


async def _submit(proxy: Proxy) -> str:
    async with httpx.AsyncClient(timeout=30) as http:
        answer = await http.post(
            f"{proxy.url}/v1/async/embeddings",
            json={"model": "m", "input": "x"},
            headers={"x-bf-async-webhook": "billing"},
        )
    assert answer.status_code == 202, answer.text
    return str(answer.json()["id"])


async def _history(proxy: Proxy, job_id: str, settled: str) -> list[dict[str, Any]]:
    """The job's attempts in the shared history, once one with outcome ``settled`` is there."""
    async with httpx.AsyncClient(timeout=30) as http:
        listing = (await http.get(f"{proxy.url}/api/webhooks", headers=ADMIN)).json()
        endpoint_id = listing["endpoints"][0]["id"]
        async with asyncio.timeout(60):
            while True:
                page = await http.get(f"{proxy.url}/api/webhooks/{endpoint_id}/deliveries", headers=ADMIN)
                mine = [d for d in page.json()["deliveries"] if d["async_job_id"] == job_id]
                if any(d["outcome"] == settled for d in mine):
                    return sorted(mine, key=lambda d: (d["attempt_no"], d["created_at"]))
                await asyncio.sleep(0.05)  # polling a condition, not timing one


async def _until(condition: Callable[[], Awaitable[bool]]) -> None:
    async with asyncio.timeout(60):
        while not await condition():  # noqa: ASYNC110 - the condition is in Redis
            await asyncio.sleep(0.02)  # polling a condition, not timing one


async def _outbox_empty(raw: aioredis.Redis) -> bool:
    pending = (await raw.xpending(OUTBOX, "deliverers"))["pending"] if await raw.exists(OUTBOX) else 0
    return bool(await raw.xlen(OUTBOX) == 0 and pending == 0 and await raw.zcard(f"{OUTBOX}:due") == 0)


async def _kill(proxy: Proxy) -> None:
    proxy.process.kill()
    assert await proxy.process.wait() == -9


def _signed(attempts: list[dict[str, Any]], job_id: str) -> None:
    for attempt in attempts:
        assert attempt["headers"]["webhook-id"] == f"msg_{job_id}"  # stable: receivers dedupe on it
        assert verify(SECRET, attempt["headers"], attempt["raw"])  # re-signed per attempt


async def test_a_delivery_in_back_off_survives_its_instance(
    instance: Any, receiver: ScriptedReceiver, raw: aioredis.Redis
) -> None:
    a = await instance()
    job_id = await _submit(a)
    receiver.scripts[job_id] = [503, 503, 200]
    await receiver.until(job_id, 1)
    await _until(lambda: _due(raw))  # A has stored the retry: it is in its back-off
    await _kill(a)
    assert len(receiver.attempts[job_id]) == 1  # A made only the first attempt
    b = await instance()
    attempts = await receiver.until(job_id, 3)
    history = await _history(b, job_id, "delivered")
    assert [a["status"] for a in attempts] == [503, 503, 200]
    _signed(attempts, job_id)
    outcomes = [(d["attempt_no"], d["outcome"]) for d in history]
    assert outcomes == [(1, "retryable_failure"), (2, "retryable_failure"), (3, "delivered")]
    await _until(lambda: _outbox_empty(raw))


async def _due(raw: aioredis.Redis) -> bool:
    return bool(await raw.zcard(f"{OUTBOX}:due") == 1)


async def test_an_attempt_cut_off_by_sigkill_is_taken_over(
    instance: Any, receiver: ScriptedReceiver, raw: aioredis.Redis
) -> None:
    a = await instance()
    job_id = await _submit(a)
    receiver.scripts[job_id] = [HANG, 200]
    await receiver.until(job_id, 1)  # A's attempt is in flight, held by A in the stream
    await _kill(a)
    b = await instance()  # takes it over once A has been silent for webhook_claim_idle
    attempts = await receiver.until(job_id, 2)
    history = await _history(b, job_id, "delivered")
    _signed(attempts, job_id)
    # A died before it could record its attempt: the one record is B's, a success
    assert [(d["attempt_no"], d["outcome"]) for d in history] == [(1, "delivered")]
    await _until(lambda: _outbox_empty(raw))


async def test_a_permanent_4xx_is_not_retried_by_the_other_instance(
    instance: Any, receiver: ScriptedReceiver, raw: aioredis.Redis
) -> None:
    a = await instance()
    job_id = await _submit(a)
    receiver.scripts[job_id] = [503, 404, 200]
    await receiver.until(job_id, 1)
    await _until(lambda: _due(raw))
    await _kill(a)
    b = await instance()
    history = await _history(b, job_id, "permanent_failure")
    assert [(d["attempt_no"], d["outcome"], d["status_code"]) for d in history] == [
        (1, "retryable_failure", 503),
        (2, "permanent_failure", 404),
    ]
    await _until(lambda: _outbox_empty(raw))  # nothing left anywhere for anyone to retry
    marker = await _submit(b)  # a later delivery goes through: B's reader is alive
    await _history(b, marker, "delivered")
    assert [a["status"] for a in receiver.attempts[job_id]] == [503, 404]
    _signed(receiver.attempts[job_id], job_id)
