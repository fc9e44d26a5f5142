"""The ``redis`` work queue against a real redis-server, in one process: the request travels
through Redis (headers sealed, body in pieces) and comes back whole; an entry whose consumer
stopped renewing it is re-delivered as the next attempt, and fails ``worker_lost`` once
``max_attempts`` runs were lost; a run not finished at shutdown is handed back at once; nothing
of a credential is in Redis in clear; the misconfigurations are refused before anything starts."""

from __future__ import annotations

import asyncio
import io
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis.asyncio as aioredis
import structlog.testing
from bifrost_async import AsyncJobsMiddleware
from bifrost_async.jobs import Job, JobStatus
from bifrost_async.queue import CapturedRequest, QueueContext, QueueRefused, WorkItem
from bifrost_async.store import StoreContext, StoreReachability
from bifrost_async.testing import FakeClock, make_job, processing
from redis_server import redis_contents
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route
from test_redis_service import SUBMIT, completed, eventually

from bifrost_async_redis import RedisJobStore, RedisWorkQueue, redis_queue, redis_store
from bifrost_async_redis.requests import PIECE_BYTES

KEY = "qqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqo"  # 32 bytes, base64url
SECRET = "Bearer sk-test-SECRET-9d41"
API_KEY = "sk-api-SECRET-77aa"


class Options:
    """The options a queue reads (a stand-in for AsyncJobsConfig with a short lease)."""

    queue_size = 100
    lease_seconds = 0.4
    max_attempts = 2
    max_queued_body_bytes = 64 * 1024 * 1024
    spool_memory_bytes = 64 * 1024
    spool_dir = None
    encryption_key = KEY
    request_dir: str | None = None

    def __init__(self, clock: FakeClock) -> None:
        self.clock = clock

    def owner_queue_share(self) -> int:
        return 0

    def attempts_for(self, request_type: str) -> int:
        return self.max_attempts


@pytest.fixture
async def store(redis_url: str) -> AsyncIterator[RedisJobStore]:
    built = redis_store(
        StoreContext(clock=FakeClock(), max_jobs=1000, options={"url": redis_url, "sweep_interval": 0})
    )
    await built.start()
    yield built
    await built.close()


async def queue_for(
    store: RedisJobStore,
    name: str,
    ended: list[Job] | None = None,
    reachability: StoreReachability | None = None,
) -> RedisWorkQueue:
    context = QueueContext(
        config=Options(store.clock),  # type: ignore[arg-type]
        store=store,
        worker_name=name,
        finished=(ended if ended is not None else []).append,
        reachability=reachability,
    )
    queue = redis_queue(context)
    assert queue is not None
    await queue.start()
    queue.accepting = True
    return queue


def request(body: bytes) -> CapturedRequest:
    headers = [(b"authorization", SECRET.encode()), (b"x-api-key", API_KEY.encode()), (b"x-other", b"v")]
    return CapturedRequest(
        method="POST",
        path="/v1/chat/completions",
        query_string=b"a=1",
        headers=headers,
        body=io.BytesIO(body),
        body_size=len(body),
        scope={"scheme": "http", "server": ("127.0.0.1", 80), "state": {"not": object()}},
        peer="10.0.0.9",
    )


async def submit(queue: RedisWorkQueue, store: RedisJobStore, body: bytes) -> Job:
    job = make_job(store.clock)  # type: ignore[arg-type]
    await store.create(job)
    with await queue.admit("") as slot:
        assert await slot.enqueue(WorkItem(job=job, request=request(body)))
    return job


async def die(queue: RedisWorkQueue) -> None:
    """Stop a queue's renewals and reclaims as a killed process would (no hand-back)."""
    queue._stopped.set()  # its renew and reclaim loops end
    await asyncio.wait(queue._background, timeout=30)
    assert all(task.done() for task in queue._background)
    queue._background = []


async def test_the_request_comes_back_whole_with_its_headers_sealed(
    store: RedisJobStore, raw: aioredis.Redis
) -> None:
    queue = await queue_for(store, "a")
    body = bytes(range(256)) * (PIECE_BYTES // 256 * 3 + 7)  # a bit over 3 pieces
    job = await submit(queue, store, body)
    assert await raw.llen(queue.requests.body_key(job.id)) == 4
    dump = await redis_contents(raw)  # nothing of a credential in any key or value
    for secret in (SECRET, API_KEY, "sk-test-SECRET", "x-other"):
        assert secret.encode() not in dump
    item = await queue.take()
    assert item.job.id == job.id and item.attempt == 1 and item.expect is JobStatus.PENDING
    got = item.request
    assert got.body.read() == body and got.body_size == len(body)
    assert got.header(b"authorization") == SECRET.encode() and got.header(b"x-api-key") == API_KEY.encode()
    assert (got.method, got.path, got.query_string, got.peer) == (
        "POST",
        "/v1/chat/completions",
        b"a=1",
        "10.0.0.9",
    )
    assert got.scope == {"scheme": "http", "server": ("127.0.0.1", 80)}
    queue.done(item)
    await queue.close()
    assert await raw.exists(queue.requests.head_key(job.id), queue.requests.body_key(job.id)) == 0
    assert await raw.xlen(queue.stream) == 0


async def test_a_lost_run_is_redelivered_then_fails_once_attempts_are_spent(store: RedisJobStore) -> None:
    ended: list[Job] = []
    a = await queue_for(store, "a")
    job = await submit(a, store, b"{}")
    first = await a.take()
    assert await store.update(processing(first.job, store.clock), expect=(JobStatus.PENDING,))  # type: ignore[arg-type]
    await die(a)  # a's run is lost: nobody renews its entry
    b = await queue_for(store, "b", ended)
    second = await asyncio.wait_for(b.take(), 30)
    assert second.job.id == job.id and second.attempt == 2 and second.expect is JobStatus.PROCESSING
    await die(b)  # the second run is lost too: max_attempts (2) runs lost
    c = await queue_for(store, "c", ended)
    await eventually(lambda: _status(store, job.id, JobStatus.FAILED), "the job to fail", 30)
    stored = await store.get(job.id)
    assert stored is not None and stored.error is not None
    assert stored.error["error"]["code"] == "worker_lost"
    assert [e.id for e in ended] == [job.id]
    await c.close()


async def test_no_take_over_until_redis_answered_for_a_whole_lease(
    store: RedisJobStore, raw: aioredis.Redis
) -> None:
    """After an outage every entry's idle time has grown, live instances' too: an instance takes
    nothing over until Redis has answered it for a whole lease (the live ones renew first)."""
    clock: FakeClock = store.clock  # type: ignore[assignment]
    a = await queue_for(store, "a")
    job = await submit(a, store, b"{}")
    first = await a.take()
    assert await store.update(processing(first.job, clock), expect=(JobStatus.PENDING,))
    await die(a)  # nobody renews a's entry from here on
    lease_ms = Options.lease_seconds * 1000

    async def idle_past_lease() -> bool:
        pending = await raw.xpending_range(a.stream, "workers", "-", "+", 10)
        return bool(pending) and pending[0]["time_since_delivered"] > 2 * lease_ms

    await eventually(idle_past_lease, "a's entry to be idle for two leases", 30)
    reachability = StoreReachability(clock, Options.lease_seconds)
    reachability.failed("an outage this process saw")
    answers = 0
    answered = reachability.answered

    def counted() -> None:
        nonlocal answers
        answers += 1
        answered()

    reachability.answered = counted  # type: ignore[method-assign]
    b = await queue_for(store, "b", reachability=reachability)
    taking = asyncio.create_task(b.take())
    # several reclaim rounds of b's, each after Redis answered, with the entry idle past a lease
    await eventually(lambda: _at_least(lambda: answers, 3), "three gated reclaim rounds", 30)
    assert not taking.done(), "an entry was taken over before Redis answered for a whole lease"
    pending = await raw.xpending_range(a.stream, "workers", "-", "+", 10)
    assert [p["consumer"] for p in pending] == [b"a"]
    clock.advance(Options.lease_seconds)  # Redis has now answered b for a whole lease
    again = await asyncio.wait_for(taking, 30)
    assert again.job.id == job.id and again.attempt == 2
    b.done(again)
    await b.close()


async def _at_least(value: Any, minimum: int) -> bool:
    return bool(value() >= minimum)


async def _status(store: RedisJobStore, job_id: str, status: JobStatus) -> bool:
    job = await store.get(job_id)
    return job is not None and job.status is status


async def test_a_run_handed_back_is_taken_by_another_instance_at_once(store: RedisJobStore) -> None:
    a = await queue_for(store, "a")
    job = await submit(a, store, b"{}")
    item = await a.take()
    assert await a.hand_back(item, ran=True)
    a.done(item)
    b = await queue_for(store, "b")
    again = await asyncio.wait_for(b.take(), 10)  # long before a lease would pass
    assert again.job.id == job.id and again.attempt == 1  # a deploy is not a lost run
    assert again.request.body.read() == b"{}"  # the request was kept for it
    await a.close()
    await b.close()


async def test_the_bound_holds_across_instances(store: RedisJobStore) -> None:
    a, b = await queue_for(store, "a"), await queue_for(store, "b")
    a.config.queue_size = b.config.queue_size = 2  # type: ignore[misc]
    await submit(a, store, b"{}")
    await submit(b, store, b"{}")
    with pytest.raises(QueueRefused) as refused:
        await a.admit("")
    assert refused.value.reason == "full"


# -- the middleware on the queue ----------------------------------------------------------------


async def chat(request: Request) -> JSONResponse:
    return JSONResponse({"auth": request.headers.get("authorization"), "body": (await request.json())["n"]})


def instance(url: str, name: str | None, app: Any = None, **options: Any) -> AsyncJobsMiddleware:
    """One instance of the middleware on the Redis store and queue at ``url``, around ``app``
    (default: an app echoing ``chat``), as worker ``name`` (``None``: the default name)."""
    if app is None:
        app = Starlette(routes=[Route("/v1/chat/completions", chat, methods=["POST"])])
    if name is not None:
        options["worker_name"] = name
    return AsyncJobsMiddleware(
        app,
        store="redis",
        store_options={"url": url, "sweep_interval": 0},
        queue="redis",
        encryption_key=KEY,
        **options,
    )


async def test_a_job_runs_through_the_queue_and_leaves_nothing(redis_url: str, raw: aioredis.Redis) -> None:
    app = instance(redis_url, "a")
    await app.startup()
    try:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as client:
            body = {"model": "m", "messages": [{"role": "user", "content": "x"}], "n": 7}
            submitted = await client.post(SUBMIT, json=body, headers={"Authorization": SECRET})
            assert submitted.status_code == 202, submitted.text
            done = await completed(client, submitted.json()["id"], headers={"Authorization": SECRET})
            assert done.json()["result"] == {"auth": SECRET, "body": 7}
        await eventually(lambda: _no_request_keys(raw), "the request keys to go")
        assert await raw.xlen("bifrost-async:queue") == 0
    finally:
        await app.shutdown()


async def _no_request_keys(raw: aioredis.Redis) -> bool:
    return not [key async for key in raw.scan_iter("bifrost-async:req:*")]


def test_a_distributed_queue_needs_a_shared_store_and_a_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("BIFROST_ASYNC_ENCRYPTION_KEY", raising=False)
    app = Starlette()
    with pytest.raises(ValueError, match="needs a shared store"):
        AsyncJobsMiddleware(app, queue="redis", encryption_key=KEY)
    with pytest.raises(ValueError, match=r"BIFROST_ASYNC_ENCRYPTION_KEY.*bifrost-async keygen"):
        AsyncJobsMiddleware(app, store="redis", queue="redis")
    with pytest.raises(ValueError, match="unknown queue 'nope'"):
        AsyncJobsMiddleware(app, queue="nope")


async def test_middleware_instances_replay_each_others_jobs_into_their_own_app(redis_url: str) -> None:
    """Middleware mode: jobs submitted to A run on B too, replayed into B's own copy of the app."""
    gate = asyncio.Event()
    ran: list[tuple[str, int]] = []
    both = asyncio.Condition()

    def app_copy(name: str) -> Starlette:
        async def held(request: Request) -> JSONResponse:
            n = (await request.json())["n"]
            async with both:
                ran.append((name, n))
                both.notify_all()
            await gate.wait()
            return JSONResponse({"copy": name, "n": n})

        return Starlette(routes=[Route("/v1/chat/completions", held, methods=["POST"])])

    apps = [instance(redis_url, name, app_copy(name), concurrency=1) for name in ("a", "b")]
    for app in apps:
        await app.startup()
    try:
        transport = httpx.ASGITransport(app=apps[0])
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            body: dict[str, Any] = {"model": "m", "messages": [{"role": "user", "content": "x"}]}
            ids = [(await client.post(SUBMIT, json={**body, "n": n})).json()["id"] for n in (1, 2)]
            async with both:  # each instance has one worker: both jobs start only if B takes one
                await asyncio.wait_for(both.wait_for(lambda: len(ran) == 2), 30)
            assert {name for name, _ in ran} == {"a", "b"}
            gate.set()
            results = [(await completed(client, job_id)).json()["result"] for job_id in ids]
        assert sorted(r["n"] for r in results) == [1, 2] and {r["copy"] for r in results} == {"a", "b"}
    finally:
        gate.set()
        for app in apps:
            await app.shutdown()


async def test_places_and_the_owner_share_hold_across_instances(redis_url: str) -> None:
    """Two instances, one busy worker each: what waits is listed with its place in the shared
    stream on either instance, and one owner's share of the queue counts both instances."""
    gate = asyncio.Event()
    started = asyncio.Semaphore(0)

    def app_copy() -> Starlette:
        async def held(request: Request) -> JSONResponse:
            await request.body()
            started.release()
            await gate.wait()
            return JSONResponse({})

        return Starlette(routes=[Route("/v1/chat/completions", held, methods=["POST"])])

    apps = [instance(redis_url, name, app_copy(), concurrency=1, owner_queue_size=5) for name in ("a", "b")]
    for app in apps:
        await app.startup()
    alice = {"Authorization": SECRET}
    body = {"model": "m", "messages": [{"role": "user", "content": "x"}]}
    try:
        a = httpx.AsyncClient(transport=httpx.ASGITransport(app=apps[0]), base_url="http://t")
        b = httpx.AsyncClient(transport=httpx.ASGITransport(app=apps[1]), base_url="http://t")
        async with a, b:
            for _ in range(2):  # one runs on each instance
                assert (await a.post(SUBMIT, json=body, headers=alice)).status_code == 202
            for _ in range(2):
                await asyncio.wait_for(started.acquire(), 30)
            waiting = [(await b.post(SUBMIT, json=body, headers=alice)).json()["id"] for _ in range(3)]
            refused = await a.post(SUBMIT, json=body, headers=alice)  # 2 running + 3 waiting = 5
            assert refused.status_code == 429, refused.text
            assert refused.json()["error"]["code"] == "owner_quota_exceeded"
            assert (
                await a.post(SUBMIT, json=body, headers={"Authorization": "Bearer other"})
            ).status_code == 202
            listed = (await a.get(SUBMIT, headers=alice)).json()["data"]
            places = {job["id"]: job.get("queue_position") for job in listed}
            assert [places[job_id] for job_id in waiting] == [1, 2, 3]
            assert sorted(p for p in places.values() if p is not None) == [1, 2, 3]
            gate.set()
    finally:
        gate.set()
        for app in apps:
            await app.shutdown()


async def test_only_a_job_that_never_reached_the_queue_is_lost_on_poll(
    redis_url: str, raw: aioredis.Redis
) -> None:
    """A job waiting in the stream past its lease is not an orphan; a stored pending job without
    an entry (its submit's instance died before queueing it) fails worker_lost on poll."""
    clock = FakeClock()
    app = instance(redis_url, "a", clock=clock, lease_seconds=5)
    await app.startup()
    try:
        assert app.store is not None and app.runner is not None
        # stored, never queued
        lost = make_job(clock, request_type="chat_completion", owner="", lease_expires_at=clock() + 5)
        await app.store.create(lost)
        await app.runner.stop()  # no worker reads the stream from here on
        app.runner.queue.accepting, app.runner.queue.closing = True, False  # submits still queue
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as client:
            body = {"model": "m", "messages": [{"role": "user", "content": "x"}], "n": 1}
            waiting = (await client.post(SUBMIT, json=body)).json()["id"]
            clock.advance(60)
            still = await client.get(f"{SUBMIT}/{waiting}")
            assert still.status_code == 202 and still.json()["status"] == "pending"
            gone = await client.get(f"{SUBMIT}/{lost.id}")
            assert gone.status_code == 200 and gone.json()["error"]["error"]["code"] == "worker_lost"
    finally:
        await app.shutdown()


async def test_a_type_allowed_one_attempt_fails_at_its_first_lost_run(store: RedisJobStore) -> None:
    ended: list[Job] = []
    a = await queue_for(store, "a")
    job = await submit(a, store, b"{}")  # a transcription
    taken = await a.take()
    assert await store.update(processing(taken.job, store.clock), expect=(JobStatus.PENDING,))  # type: ignore[arg-type]
    await die(a)
    b = await queue_for(store, "b", ended)
    b.config.attempts_for = {"transcription": 1}.get  # type: ignore[method-assign,assignment]
    await eventually(lambda: _status(store, job.id, JobStatus.FAILED), "the job to fail", 30)
    assert [e.id for e in ended] == [job.id]
    await b.close()


async def test_no_credential_is_in_redis_in_clear_after_real_submits(
    redis_url: str, raw: aioredis.Redis
) -> None:
    """Submits through the middleware with Authorization and x-api-key, held queued and running:
    every key and value in Redis (job records, stream, request heads and bodies) is scanned."""
    gate = asyncio.Event()

    async def held(request: Request) -> JSONResponse:
        await request.body()
        await gate.wait()
        return JSONResponse({})

    app = instance(
        redis_url,
        None,
        Starlette(routes=[Route("/v1/chat/completions", held, methods=["POST"])]),
        owner_secret="owner-secret",
        concurrency=1,
    )
    await app.startup()
    try:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as client:
            body = {"model": "m", "messages": [{"role": "user", "content": "x"}]}
            for headers in ({"Authorization": SECRET}, {"x-api-key": API_KEY}, {"Authorization": SECRET}):
                assert (await client.post(SUBMIT, json=body, headers=headers)).status_code == 202
        assert [key async for key in raw.scan_iter("bifrost-async:req:*:head")]  # requests are stored
        dump = await redis_contents(raw)
        assert b'"messages"' in dump  # the scan does reach the stored requests (bodies are not secret)
        for secret in (SECRET, API_KEY, "sk-test-SECRET", "sk-api-SECRET"):
            assert secret.encode() not in dump
    finally:
        gate.set()
        await app.shutdown()


async def test_requests_in_a_shared_directory(redis_url: str, raw: aioredis.Redis, tmp_path: Path) -> None:
    """``request_dir``: the request goes to files (headers sealed), nothing of it to Redis; the
    job runs on either instance; its files are gone when it ends; a missing directory is refused."""
    shared = tmp_path / "requests"
    shared.mkdir()
    app = instance(redis_url, "a", request_dir=str(shared), concurrency=1)
    await app.startup()
    try:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as client:
            body = {"model": "m", "messages": [{"role": "user", "content": "x"}], "n": 3}
            submitted = await client.post(SUBMIT, json=body, headers={"Authorization": SECRET})
            assert submitted.status_code == 202, submitted.text
            job_id = submitted.json()["id"]
            done = await completed(client, job_id, headers={"Authorization": SECRET})
            assert done.json()["result"] == {"auth": SECRET, "body": 3}
        assert not [key async for key in raw.scan_iter("bifrost-async:req:*")]
        await eventually(lambda: _empty(shared), "the request files to go")
    finally:
        await app.shutdown()
    with pytest.raises(ValueError, match=r"request directory .* does not exist"):
        instance(redis_url, "b", request_dir=str(tmp_path / "nope"))


async def _empty(directory: Path) -> bool:
    return not list(directory.iterdir())


async def test_a_directory_request_round_trip_keeps_headers_sealed(tmp_path: Path) -> None:
    from bifrost_async.queue import Keyring

    from bifrost_async_redis.request_dir import DirectoryRequests

    requests = DirectoryRequests(str(tmp_path), keyring=Keyring.parse(KEY), prefix="p:")
    body = b"\x00\x01" * 300_000
    await requests.save("job-1", request(body))
    on_disk = b"".join(path.read_bytes() for path in tmp_path.iterdir())
    assert SECRET.encode() not in on_disk and API_KEY.encode() not in on_disk
    back = await requests.load("job-1", memory_bytes=1024, spool_dir=None)
    assert back.body.read() == body and back.header(b"authorization") == SECRET.encode()
    back.close()
    await requests.drop("job-1")
    assert not list(tmp_path.iterdir())


async def test_a_run_thought_lost_runs_twice_and_the_first_result_wins(redis_url: str) -> None:
    """At least once: an instance that stops renewing (frozen, not dead) has its run re-delivered
    to the other; both runs finish, one result is stored, the late one is dropped and logged."""
    gate = asyncio.Event()
    ran: list[str] = []
    arrived = asyncio.Condition()

    def app_copy(name: str) -> Starlette:
        async def held(request: Request) -> JSONResponse:
            await request.body()
            async with arrived:
                ran.append(name)
                arrived.notify_all()
            await gate.wait()
            return JSONResponse({"copy": name})

        return Starlette(routes=[Route("/v1/chat/completions", held, methods=["POST"])])

    apps = {
        name: instance(redis_url, name, app_copy(name), concurrency=1, lease_seconds=0.5)
        for name in ("a", "b")
    }
    for app in apps.values():
        await app.startup()
    try:
        with structlog.testing.capture_logs() as logs:
            transport = httpx.ASGITransport(app=apps["a"])
            async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
                body = {"model": "m", "messages": [{"role": "user", "content": "x"}]}
                job_id = (await client.post(SUBMIT, json=body)).json()["id"]
                async with arrived:
                    await asyncio.wait_for(arrived.wait_for(lambda: len(ran) == 1), 30)
                frozen = apps[ran[0]].runner
                assert frozen is not None
                await die(frozen.queue)  # type: ignore[arg-type]  # its entry's idle time grows
                async with arrived:
                    await asyncio.wait_for(arrived.wait_for(lambda: len(ran) == 2), 30)
                assert sorted(ran) == ["a", "b"]
                gate.set()
                done = (await completed(client, job_id)).json()
                assert done["status"] == "completed" and done["result"]["copy"] in ("a", "b")
                await eventually(
                    lambda: _logged(logs, "job.duplicate_result_dropped"), "the late result to be dropped"
                )
        assert len([e for e in logs if e["event"] == "job.completed"]) == 1
    finally:
        gate.set()
        for app in apps.values():
            await app.shutdown()


async def _logged(logs: list[dict[str, Any]], event: str) -> bool:
    return any(entry["event"] == event for entry in logs)
