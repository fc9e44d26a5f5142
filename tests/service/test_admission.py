"""Admission under a flood (issue 11 items 2, 3, 5, 10, 11, 12): per-owner shares, refusals
decided before the body is spooled, the event loop kept free, nothing accepted left pending."""

from __future__ import annotations

import asyncio
import time
from datetime import datetime
from typing import Any

import httpx
import pytest

from bifrost_async import Job
from bifrost_async.builtin.memory import MemoryStore
from bifrost_async.core.capture import spool_body
from bifrost_async.service import jobs_service as service_module
from tests.helpers import build_stack

A = {"authorization": "Bearer tenant-a"}
B = {"authorization": "Bearer tenant-b"}
GATED = {"model": "test/gate", "input": "x"}
OK = {"model": "test/ok", "input": "x"}


def assert_owner_quota(response: httpx.Response) -> None:
    assert response.status_code == 429, response.text
    assert response.headers["retry-after"] == "1"
    error = response.json()["error"]
    assert error["code"] == "owner_quota_exceeded" and error["type"] == "rate_limit_error"


@pytest.mark.parametrize("flooder", [A, {}], ids=["credential", "anonymous"])
async def test_a_queue_flood_leaves_room_for_another_caller(
    serve: Any, http: httpx.AsyncClient, flooder: dict[str, str]
) -> None:
    stack = await build_stack(serve, concurrency=1, queue_size=8)  # a share of 4 queued or running
    flood = [await stack.submit(http, "embeddings", json=GATED, headers=flooder) for _ in range(6)]
    assert [r.status_code for r in flood[:4]] == [202] * 4
    for refused in flood[4:]:
        assert_owner_quota(refused)
    other = await stack.submit(http, "embeddings", json=OK, headers=B)
    assert other.status_code == 202, other.text
    stack.app.state.gate.opened.set()
    assert (await stack.finish(http, "embeddings", other, headers=B)).json()["status"] == "completed"


@pytest.mark.parametrize("flooder", [A, {}], ids=["credential", "anonymous"])
async def test_a_store_flood_leaves_room_for_another_caller(
    serve: Any, http: httpx.AsyncClient, flooder: dict[str, str]
) -> None:
    # finished jobs with the longest TTL: they hold store places, not queue slots
    stack = await build_stack(serve, max_jobs=6, owner_queue_size=0)  # a share of 3 live jobs
    headers = {**flooder, "x-bf-async-job-result-ttl": "604800"}
    for _ in range(3):
        kept = await stack.submit(http, "embeddings", json=OK, headers=headers)
        await stack.finish(http, "embeddings", kept, headers=flooder)
    assert_owner_quota(await stack.submit(http, "embeddings", json=OK, headers=headers))
    other = await stack.submit(http, "embeddings", json=OK, headers=B)
    assert (await stack.finish(http, "embeddings", other, headers=B)).json()["status"] == "completed"


async def test_a_failed_job_is_kept_no_longer_than_max_failed_ttl(
    serve: Any, http: httpx.AsyncClient
) -> None:
    stack = await build_stack(serve, max_failed_ttl=60)
    headers = {"x-bf-async-job-result-ttl": "604800"}
    failed = await stack.submit(http, "embeddings", json={"model": "test/error"}, headers=headers)
    job = (await stack.finish(http, "embeddings", failed)).json()
    assert job["status"] == "failed"
    kept = datetime.fromisoformat(job["expires_at"]) - datetime.fromisoformat(job["completed_at"])
    assert kept.total_seconds() == pytest.approx(60, abs=0.01)
    done = await stack.submit(http, "embeddings", json=OK, headers=headers)  # success keeps its TTL
    job = (await stack.finish(http, "embeddings", done)).json()
    kept = datetime.fromisoformat(job["expires_at"]) - datetime.fromisoformat(job["completed_at"])
    assert kept.total_seconds() == pytest.approx(604800, abs=0.01)


async def test_refused_submits_write_nothing_to_the_spool(
    serve: Any, http: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    # spool files are anonymous (O_TMPFILE): count the bodies that reach the spool instead
    spooled: list[int] = []

    async def counting_spool(*args: Any, **kwargs: Any) -> Any:
        body, size = await spool_body(*args, **kwargs)
        spooled.append(size)
        return body, size

    monkeypatch.setattr(service_module, "spool_body", counting_spool)
    stack = await build_stack(serve, concurrency=1, queue_size=1, owner_queue_size=1)
    big = {"model": "test/gate", "input": "x" * 300_000}
    first = await stack.submit(http, "embeddings", json=big, headers={**A, "idempotency-key": "k1"})
    await stack.app.state.gate.arrived.wait()
    assert len(spooled) == 1
    # over the owner's share of the queue, a repeat of an accepted key, then a full queue
    assert_owner_quota(await stack.submit(http, "embeddings", json=big, headers=A))
    repeat = await stack.submit(http, "embeddings", json=big, headers={**A, "idempotency-key": "k1"})
    assert repeat.status_code == 202 and repeat.json()["id"] == first.json()["id"]
    assert (await stack.submit(http, "embeddings", json=big, headers=B)).status_code == 202
    assert (await stack.submit(http, "embeddings", json=big, headers={"x-api-key": "c"})).status_code == 429
    assert len(spooled) == 2  # only tenant-b's accepted job was spooled
    stack.app.state.gate.opened.set()


async def test_idempotent_retry_is_answered_when_the_queue_is_full(
    serve: Any, http: httpx.AsyncClient
) -> None:
    stack = await build_stack(serve, concurrency=1, queue_size=1, owner_queue_size=0)
    first = await stack.submit(http, "embeddings", json=GATED, headers={"idempotency-key": "once"})
    await stack.app.state.gate.arrived.wait()
    assert (await stack.submit(http, "embeddings", json=OK)).status_code == 202  # queued: now full
    assert (await stack.submit(http, "embeddings", json=OK)).status_code == 429
    again = await stack.submit(http, "embeddings", json=GATED, headers={"idempotency-key": "once"})
    assert again.status_code == 202 and again.json()["id"] == first.json()["id"]
    assert again.headers["idempotent-replayed"] == "true"
    stack.app.state.gate.opened.set()


async def test_a_refused_submit_frees_its_idempotency_key(serve: Any, http: httpx.AsyncClient) -> None:
    stack = await build_stack(serve, max_jobs=1, owner_max_jobs=0)
    kept = await stack.submit(http, "embeddings", json=OK)
    await stack.finish(http, "embeddings", kept)
    refused = await stack.submit(http, "embeddings", json=OK, headers={"idempotency-key": "retry-me"})
    assert refused.status_code == 503  # the store is full
    assert stack.middleware.store is not None
    await stack.middleware.store.delete(kept.json()["id"])
    retried = await stack.submit(http, "embeddings", json=OK, headers={"idempotency-key": "retry-me"})
    assert retried.status_code == 202, retried.text  # not 409 for the next 30 s


async def test_cancelling_a_queued_job_frees_its_slot_and_spool_at_once(
    serve: Any, http: httpx.AsyncClient
) -> None:
    stack = await build_stack(serve, concurrency=1, queue_size=1, owner_queue_size=0)
    runner = stack.middleware.runner
    assert runner is not None
    await stack.submit(http, "embeddings", json=GATED)
    await stack.app.state.gate.arrived.wait()
    queued = await stack.submit(http, "embeddings", json=OK)
    spool = runner.queue._queued[queued.json()["id"]].request.body
    cancelled = await http.delete(f"{stack.url}/v1/async/embeddings/{queued.json()['id']}")
    assert cancelled.status_code == 200 and cancelled.json()["error"]["type"] == "cancelled"
    assert spool.closed and runner.queued == 0  # its spool is dropped and its slot given back now
    nxt = await stack.submit(http, "embeddings", json=OK)
    assert nxt.status_code == 202, nxt.text
    stack.app.state.gate.opened.set()
    assert (await stack.finish(http, "embeddings", nxt)).json()["status"] == "completed"


class HeldCreates(MemoryStore):
    """A memory store whose creates wait until the test lets them through."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.arrived = asyncio.Event()
        self.release = asyncio.Event()

    async def create(self, job: Job) -> None:
        self.arrived.set()
        await self.release.wait()
        await super().create(job)


async def test_a_submit_stored_after_shutdown_drained_is_not_left_pending(
    serve: Any, http: httpx.AsyncClient
) -> None:
    stack = await build_stack(serve, shutdown_grace=0.2)
    middleware = stack.middleware
    assert middleware.store is not None and middleware.runner is not None
    store = HeldCreates(middleware.config.clock, middleware.config.max_jobs)
    middleware.store = middleware.runner.store = store
    assert middleware.service is not None
    middleware.service.store = store
    submit = asyncio.create_task(stack.submit(http, "embeddings", json=OK))
    await store.arrived.wait()  # its store write is in flight...
    await middleware.drain()  # ...for longer than the drain waits for it
    store.release.set()
    response = await submit
    if response.status_code == 202:  # accepted: then it must end
        job = await store.get(response.json()["id"])
        assert job is not None and job.status.terminal, job
    else:  # refused: then nothing of it is left
        assert response.status_code == 503 and response.headers["retry-after"] == "1"
        assert len(store) == 0


async def test_a_large_submit_does_not_stall_a_concurrent_poll(serve: Any, http: httpx.AsyncClient) -> None:
    # poll_pacing off: every poll is answered at once, so its time is the event loop's stall only
    # (paced, each of these back-to-back polls would be held up to a second by design)
    stack = await build_stack(serve, concurrency=1, poll_pacing=0)
    held = await stack.submit(http, "embeddings", json=GATED)  # keeps the big job queued, unparsed
    await stack.app.state.gate.arrived.wait()
    poll_url = f"{stack.url}/v1/async/embeddings/{held.json()['id']}"
    body = b'{"model":"m","input":[' + b"0," * 24_000_000 + b"0]}"  # 48 MB of small tokens
    submitted = time.monotonic()
    # its own timeout: reading and parsing 48 MB can outlast the client's 30 s on a loaded machine
    # (the other pytest-xdist worker, other jobs); it only bounds a hang, nothing is timed by it
    big = asyncio.create_task(stack.submit(http, "embeddings", content=body, timeout=180))
    worst = 0.0
    polls = 0
    async with httpx.AsyncClient(timeout=30) as poller:
        while not big.done():
            started = time.monotonic()
            assert (await poller.get(poll_url)).status_code == 202
            worst = max(worst, time.monotonic() - started)
            polls += 1
    assert (await big).status_code == 202
    whole = time.monotonic() - submitted
    assert polls > 1
    # A ratio within this run, not a time bound: parsing 48 MB on the loop held every request for
    # the whole parse, most of the submit (~1.6 s of ~2 s here), so the worst poll took ~0.8 of
    # the submit; off the loop a poll waits about one parser buffer, a small part of it however
    # loaded the machine is.
    assert worst < whole / 2, f"a poll waited {worst:.2f} s of the {whole:.2f} s submit"
    await http.delete(f"{stack.url}/v1/async/embeddings/{(await big).json()['id']}")
    stack.app.state.gate.opened.set()
