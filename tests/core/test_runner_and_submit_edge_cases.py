"""Regression tests for faults a code review found: each failed before its fix."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Collection
from typing import Any

import httpx

from bifrost_async import AsyncJobError, AsyncJobsMiddleware, Job, JobStatus, hookimpl
from bifrost_async.builtin.memory import MemoryStore
from bifrost_async.service.prefer import replay_headers
from tests.apps import make_app
from tests.helpers import Recorder, build_stack


class AuthRequired:
    """An owner rule that refuses anonymous callers, as CONTRACT invites deployments to write."""

    @hookimpl
    def job_owner(self, headers: list[tuple[bytes, bytes]], scope: dict[str, Any], secret: str | None) -> str:
        for name, value in headers:
            if name == b"authorization":
                return "user:" + value.decode()
        raise AsyncJobError(401, "a credential is required", type="authentication_error")


async def test_refusing_owner_hook_does_not_leak_queue_slots(serve: Any, http: httpx.AsyncClient) -> None:
    stack = await build_stack(serve, plugins=(AuthRequired(),), queue_size=2)
    for _ in range(3):
        refused = await stack.submit(http, "embeddings", json={"model": "m", "input": "x"})
        assert refused.status_code == 401
    accepted = await stack.submit(
        http, "embeddings", json={"model": "m", "input": "x"}, headers={"authorization": "Bearer a"}
    )
    assert accepted.status_code == 202
    assert stack.middleware.runner is not None and stack.middleware.runner.queued <= 1


class SlowStore(MemoryStore):
    """A memory store whose writes take as long as a network round trip."""

    async def update(self, job: Job, *, expect: Collection[JobStatus]) -> bool:
        await asyncio.sleep(0.02)
        return await super().update(job, expect=expect)


class SlowStorePlugin:
    @hookimpl
    def register_stores(self, register: Any) -> None:
        register("slow", lambda context: SlowStore(context.clock, context.max_jobs))


async def test_shutdown_never_starts_jobs_after_grace_nor_leaves_them_processing(
    serve: Any, http: httpx.AsyncClient
) -> None:
    stack = await build_stack(
        serve, plugins=(SlowStorePlugin(),), store="slow", concurrency=2, shutdown_grace=0.25
    )
    ids = []
    for _ in range(6):
        submitted = await stack.submit(http, "embeddings", json={"model": "test/hang", "input": "x"})
        ids.append(submitted.json()["id"])
    await stack.recorder.wait("started", ids[0])
    began = time.monotonic()
    await stack.server.stop()
    took = time.monotonic() - began
    finished = stack.recorder.finished()
    assert sorted(finished) == sorted(ids), "every accepted job reached an end"
    assert all(job.status is JobStatus.FAILED and job.status_code == 500 for job in finished.values())
    started = {job.id for kind, job in stack.recorder.events if kind == "started"}
    assert len(started) == 2, "no job was started once the grace was over"
    print(f"shutdown with 6 hung jobs and a 20 ms store took {took:.2f} s (grace 0.25 s)")


class FlakyRenewals(MemoryStore):
    """Raises an unexpected (non-store) error on the first lease renewal."""

    failures = 0

    async def update(self, job: Job, *, expect: Collection[JobStatus]) -> bool:
        if (
            job.status is JobStatus.PROCESSING
            and tuple(expect) == (JobStatus.PROCESSING,)
            and not self.failures
        ):
            type(self).failures += 1
            raise RuntimeError("MISCONF")
        return await super().update(job, expect=expect)


async def test_lease_renewal_survives_an_unexpected_store_error() -> None:
    store = FlakyRenewals(time.time, 10)

    class Plugin:
        @hookimpl
        def register_stores(self, register: Any) -> None:
            register("flaky", lambda context: store)

    recorder = Recorder()
    app = make_app()
    middleware = AsyncJobsMiddleware(app, plugins=[Plugin(), recorder], store="flaky", lease_seconds=0.3)
    transport = httpx.ASGITransport(app=middleware)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        submitted = await client.post("/v1/async/embeddings", json={"model": "test/gate", "input": "x"})
        job_id = submitted.json()["id"]
        await recorder.wait("started", job_id)
        first = (await store.get(job_id)).lease_expires_at  # type: ignore[union-attr]
        async with asyncio.timeout(30):  # until a renewal after the failing one lands (a bound on a hang)
            while True:
                await asyncio.sleep(0.01)
                current = (await store.get(job_id)).lease_expires_at  # type: ignore[union-attr]
                if FlakyRenewals.failures and current and first and current > first + 0.05:
                    break
        assert FlakyRenewals.failures == 1
        assert current is not None and first is not None and current > first
        app.state.gate.opened.set()
        await recorder.wait("finished", job_id)
    await middleware.shutdown()


async def test_deeply_nested_json_is_400_not_500(serve: Any, http: httpx.AsyncClient) -> None:
    stack = await build_stack(serve)
    body = b'{"model": "m", "x": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"
    response = await stack.submit(http, "chat/completions", content=body)
    assert response.status_code == 400
    assert response.json()["error"]["message"] == "malformed JSON in request body"


async def test_request_id_with_spaces_is_echoed(serve: Any, http: httpx.AsyncClient) -> None:
    stack = await build_stack(serve)
    response = await stack.submit(
        http, "embeddings", json={"model": "m", "input": "x"}, headers={"x-request-id": "trace 42 / span 7"}
    )
    assert response.json()["request_id"] == "trace 42 / span 7"


def test_replay_drops_our_own_headers() -> None:
    headers = [
        (b"authorization", b"Bearer k"),
        (b"prefer", b"respond-async, wait=5, return=minimal"),
        (b"prefer", b"wait=3"),
        (b"idempotency-key", b"abc"),
        (b"x-bf-async-job-result-ttl", b"60"),
        (b"x-bf-async-webhook", b"billing"),
        (b"x-request-id", b"r1"),
    ]
    assert replay_headers(headers) == [
        (b"authorization", b"Bearer k"),
        (b"prefer", b"return=minimal"),
        (b"x-request-id", b"r1"),
    ]


async def test_replayed_request_carries_none_of_our_headers(serve: Any, http: httpx.AsyncClient) -> None:
    seen: list[dict[bytes, bytes]] = []

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        seen.append(dict(scope["headers"]))
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-type", b"application/json")],
            }
        )
        await send({"type": "http.response.body", "body": b"{}"})

    stack = await build_stack(serve, app=app)
    submitted = await stack.submit(
        http,
        "embeddings",
        json={"model": "m", "input": "x"},
        headers={"prefer": "wait=0", "idempotency-key": "k-1", "x-bf-async-job-result-ttl": "60"},
    )
    await stack.recorder.wait("finished", submitted.json()["id"])
    assert seen and not {b"prefer", b"idempotency-key", b"x-bf-async-job-result-ttl"} & set(seen[0])


async def test_large_json_result_is_encoded_off_the_loop(serve: Any, http: httpx.AsyncClient) -> None:
    big = {"data": [{"embedding": [0.125] * 64, "index": n} for n in range(3000)]}
    payload = json.dumps(big, indent=1).encode()  # pretty-printed: not re-encodable byte for byte

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-type", b"application/json")],
            }
        )
        await send({"type": "http.response.body", "body": payload})

    stack = await build_stack(serve, app=app)
    assert len(payload) > 1024 * 1024
    submitted = await stack.submit(http, "embeddings", json={"model": "m", "input": "x"})
    done = await stack.finish(http, "embeddings", submitted)
    assert done.json()["result"] == big
    raw = await http.get(f"{stack.url}/v1/async/embeddings/{submitted.json()['id']}/result")
    assert raw.content == payload


async def test_huge_headers_are_431_on_respond_async_too(serve: Any, http: httpx.AsyncClient) -> None:
    stack = await build_stack(serve, max_header_bytes=4096)
    response = await http.post(
        f"{stack.url}/v1/embeddings",
        json={"model": "m", "input": "x"},
        headers={"prefer": "respond-async", "x-big": "a" * 5000},
    )
    assert response.status_code == 431
    assert len(stack.middleware.store) == 0  # type: ignore[arg-type]
