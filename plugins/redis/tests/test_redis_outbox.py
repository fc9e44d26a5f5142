"""The Redis store's durable webhook outbox, on a real redis-server: a job's terminal write and
its delivery's entry are one atomic step, entries are read, retried, settled and taken over by
consumers as the capability says; and two in-process instances (real uvicorn) hand a delivery
over through it (a retry made by whichever instance reads it, an attempt cut off at shutdown
handed back at once)."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
import redis.asyncio as aioredis
from bifrost_async import AsyncJobsMiddleware
from bifrost_async.builtin.webhooks.delivery import DeliveryPolicy
from bifrost_async.builtin.webhooks.outbox import decode, encode
from bifrost_async.builtin.webhooks.plugin import Message, WebhookEndpoint, WebhooksPlugin
from bifrost_async.jobs import Job, JobStatus
from bifrost_async.store import WebhookOutbox, webhook_outbox
from tests.apps import make_app
from tests.webhook_support import SECRET, Receiver, Reports

from bifrost_async_redis import RedisJobStore
from bifrost_async_redis.options import RedisStoreOptions
from bifrost_async_redis.outbox import MAX_TAKEOVERS
from tests.conftest import RunningServer

TOKEN = "operator-token-0123456789"
ADMIN = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture
async def store(redis_url: str) -> AsyncIterator[RedisJobStore]:
    held = RedisJobStore(
        RedisStoreOptions(url=redis_url, sweep_interval=0, webhook_claim_idle=0.2),
        clock=time.time,
        max_jobs=100,
    )
    await held.start()
    yield held
    await held.close()


async def _outbox_state(raw: aioredis.Redis) -> tuple[int, int, int]:
    """Entries in the stream, pending (read, not settled), and waiting out a back-off."""
    key = "bifrost-async:wh:outbox"
    pending = (await raw.xpending(key, "deliverers"))["pending"] if await raw.exists(key) else 0
    return int(await raw.xlen(key)), int(pending), int(await raw.zcard(f"{key}:due"))


def _job(job_id: str) -> Job:
    return Job(
        id=job_id,
        request_id=job_id,
        request_type="embedding",
        status=JobStatus.PENDING,
        created_at=time.time(),
        ttl=600,
    )


async def test_the_store_has_the_capability(store: RedisJobStore) -> None:
    assert webhook_outbox(store) is store
    assert isinstance(store, WebhookOutbox)
    assert store.outbox_claim_idle == 0.2


async def test_the_terminal_write_that_lands_enqueues_once(store: RedisJobStore, raw: aioredis.Redis) -> None:
    store.outbox_attach(lambda job: None if job.id == "quiet" else f'{{"job":"{job.id}"}}')
    for job_id in ("loud", "quiet"):
        job = _job(job_id)
        await store.create(job)
        running = job.copy()
        running.status = JobStatus.PROCESSING
        assert await store.update(running, expect=(JobStatus.PENDING,))
        ended = running.copy()
        ended.status, ended.status_code, ended.completed_at = JobStatus.COMPLETED, 200, time.time()
        ended.expires_at = time.time() + 600
        assert await store.update(ended, expect=(JobStatus.PROCESSING,))
        assert await store.update(ended, expect=(JobStatus.PROCESSING,))  # a retry after a lost reply
        failed = running.copy()
        failed.status, failed.status_code, failed.completed_at = JobStatus.FAILED, 500, time.time()
        failed.expires_at = time.time() + 600
        assert not await store.update(failed, expect=(JobStatus.PROCESSING,))  # a late loser
    entries = await raw.xrange("bifrost-async:wh:outbox")
    assert [fields[b"data"] for _, fields in entries] == [b'{"job":"loud"}']  # one, only for the loud job


async def test_read_retry_settle_and_takeover(store: RedisJobStore, raw: aioredis.Redis) -> None:
    message = Message("ep-1", "billing", "msg_j1", "async_job.completed", "j1")
    await store.outbox_add(encode(message, 1))
    [(first_id, document)] = await store.outbox_read("one", 10, 0.01)
    assert decode(document) == (message, 1)
    assert await store.outbox_read("two", 10, 0.01) == []  # held by "one"
    later = encode(message, 2)
    assert await store.outbox_retry("one", first_id, later, time.time() + 3600)
    assert await _outbox_state(raw) == (0, 0, 1)  # waiting out its back-off, in Redis
    assert await store.outbox_read("two", 10, 0.01) == []  # not due yet
    assert not await store.outbox_done("one", first_id)  # settled already: nothing to do

    await raw.zadd("bifrost-async:wh:outbox:due", {later: 0})  # make it due now
    [(second_id, document)] = await store.outbox_read("two", 10, 0.01)
    assert decode(document) == (message, 2)  # the attempt number travels with it

    # "two" goes silent: after the claim idle time "three" takes the entry over
    taken: list[tuple[str, str]] = []
    async with asyncio.timeout(20):
        while not taken:
            taken = await store.outbox_read("three", 10, 0.05)
    assert taken == [(second_id, document)]
    assert not await store.outbox_retry("two", second_id, encode(message, 3), 0)  # lost it: no 2nd chain
    await store.outbox_touch("three", [second_id])
    assert await store.outbox_done("three", second_id)
    assert await _outbox_state(raw) == (0, 0, 0)


async def test_an_entry_taken_over_too_often_is_given_up(store: RedisJobStore, raw: aioredis.Redis) -> None:
    await store.outbox_add(encode(Message("ep-1", "billing", "msg_j2", "async_job.failed", "j2"), 1))
    assert len(await store.outbox_read("reader-0", 10, 0.01)) == 1
    takeovers = 0
    async with asyncio.timeout(60):
        while await raw.xlen("bifrost-async:wh:outbox"):  # each reader dies mid-attempt (goes silent)
            if await store.outbox_read(f"reader-{takeovers + 1}", 10, 0.05):
                takeovers += 1
    assert takeovers == MAX_TAKEOVERS
    assert await _outbox_state(raw) == (0, 0, 0)


async def test_a_malformed_entry_is_dropped(store: RedisJobStore, raw: aioredis.Redis) -> None:
    with pytest.raises(ValueError, match="malformed"):
        decode('{"job_id": "x"}')
    with pytest.raises(ValueError, match="malformed"):
        decode("not json")


def _instance(
    redis_url: str, receiver: Receiver, reports: Reports, **policy: Any
) -> tuple[WebhooksPlugin, Any]:
    endpoint = WebhookEndpoint(
        url=receiver.url,
        secret=SECRET,
        allow_private_network=True,
        retry_backoff_initial_seconds=1,
        retry_backoff_max_seconds=1,
        attempt_timeout_seconds=60,
    )
    plugin = WebhooksPlugin(
        {"billing": endpoint},
        admin_token=TOKEN,
        policy=DeliveryPolicy(backoff_scale=0.01, **policy),
        on_delivery=reports,
        outbox_poll_seconds=0.05,
    )
    options = {"url": redis_url, "sweep_interval": 0, "webhook_claim_idle": 30}
    return plugin, AsyncJobsMiddleware(make_app(), plugins=[plugin], store="redis", store_options=options)


async def _submit(http: httpx.AsyncClient, server: RunningServer) -> str:
    answer = await http.post(
        f"{server.url}/v1/async/embeddings",
        json={"model": "m", "input": "x"},
        headers={"x-bf-async-webhook": "billing"},
    )
    assert answer.status_code == 202, answer.text
    return str(answer.json()["id"])


async def test_a_retry_is_durable_and_counted_across_attempts(redis_url: str, raw: aioredis.Redis) -> None:
    receiver = Receiver([503, 200])
    await receiver.start()
    reports = Reports()
    plugin, middleware = _instance(redis_url, receiver, reports)
    server = RunningServer(middleware)
    await server.start()
    try:
        assert plugin.deliverer is not None  # the store has an outbox: deliveries go through it
        async with httpx.AsyncClient(timeout=30) as http:
            job_id = await _submit(http, server)
            report = await reports.wait_for(job_id)
            assert (report.outcome, report.attempts) == ("delivered", 2)
            endpoint_id = plugin.endpoints["billing"].id
            history = (
                await http.get(f"{server.url}/api/webhooks/{endpoint_id}/deliveries", headers=ADMIN)
            ).json()
        outcomes = sorted((d["attempt_no"], d["outcome"]) for d in history["deliveries"])
        assert outcomes == [(1, "retryable_failure"), (2, "delivered")]
        assert [a["id"] for a in receiver.attempts] == [f"msg_{job_id}"] * 2
        assert all(a["valid"] for a in receiver.attempts)
        assert await _outbox_state(raw) == (0, 0, 0)
    finally:
        await server.stop()
        assert receiver.runner is not None
        await receiver.runner.cleanup()


async def test_an_attempt_cut_off_at_shutdown_is_handed_back_at_once(
    redis_url: str, raw: aioredis.Redis
) -> None:
    receiver = Receiver([200], hang_first=True)
    await receiver.start()
    reports_a, reports_b = Reports(), Reports()
    _, middleware_a = _instance(redis_url, receiver, reports_a, shutdown_grace=0.0)
    a = RunningServer(middleware_a)
    await a.start()
    b: RunningServer | None = None
    try:
        async with httpx.AsyncClient(timeout=30) as http:
            job_id = await _submit(http, a)
            await asyncio.wait_for(receiver.arrived.wait(), 20)  # A's attempt hangs at the receiver
            await a.stop()  # no grace: A hands the attempt back, due now (not after the claim idle)
            assert (await _outbox_state(raw))[2] == 1
            _, middleware_b = _instance(redis_url, receiver, reports_b)
            b = RunningServer(middleware_b)
            await b.start()
            report = await reports_b.wait_for(job_id)
        assert report.outcome == "delivered"
        assert [a["id"] for a in receiver.attempts] == [f"msg_{job_id}"] * 2  # the same webhook-id
        assert all(a["valid"] for a in receiver.attempts)
        assert [r.outcome for r in reports_a.reports] == []  # A delivered nothing and reported no loss
        assert await _outbox_state(raw) == (0, 0, 0)
    finally:
        if b is not None:
            await b.stop()
        assert receiver.runner is not None
        await receiver.runner.cleanup()


def test_outbox_documents_hold_no_credential() -> None:
    document = json.loads(encode(Message("ep", "billing", "msg_j", "async_job.failed", "j"), 3))
    assert set(document) == {"endpoint_id", "webhook", "msg_id", "event", "job_id", "attempt", "nonce"}
