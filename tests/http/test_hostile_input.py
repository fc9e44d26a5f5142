"""Hostile input, faults and overload: nothing answers 500, nothing crashes, nothing stored is lost."""

from __future__ import annotations

import asyncio
import json
import tracemalloc
import urllib.parse
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bifrost_async import AsyncJobsMiddleware
from bifrost_async.service.routes import DEFAULT_ROUTES
from tests.apps import make_app
from tests.helpers import Recorder, build_stack

PATHS = [spec.path for spec in DEFAULT_ROUTES]
FUZZ = settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)
header_bytes = st.binary(max_size=64).filter(lambda b: not any(c in b for c in b"\r\n\x00"))


class Fuzzed:
    """The test app behind the middleware, driven in-process (hypothesis needs speed), plus a
    few jobs stored before the fuzzing that must all still be there after it."""

    def __init__(self) -> None:
        self.recorder = Recorder()
        self.middleware = AsyncJobsMiddleware(make_app(), plugins=[self.recorder], max_body_bytes=256 * 1024)
        self.client = httpx.AsyncClient(
            transport=httpx.ASGITransport(app=self.middleware), base_url="http://t"
        )
        self.kept: list[str] = []

    async def seed(self) -> None:
        for n in range(3):
            response = await self.client.post("/v1/async/embeddings", json={"model": "m", "input": str(n)})
            self.kept.append(response.json()["id"])
            await self.recorder.wait("finished", self.kept[-1])

    async def check_kept(self) -> None:
        for job_id in self.kept:
            polled = await self.client.get(f"/v1/async/embeddings/{job_id}")
            assert polled.status_code == 200 and polled.json()["status"] == "completed"


@pytest.fixture
async def fuzzed() -> Any:
    target = Fuzzed()
    await target.seed()
    yield target
    await target.check_kept()
    await target.middleware.shutdown()
    await target.client.aclose()


def assert_contract_error(response: httpx.Response) -> None:
    assert response.status_code < 500, response.text
    if response.status_code >= 400:
        body = response.json()
        assert isinstance(body["error"]["message"], str) and "extra_fields" in body


@FUZZ
@given(path=st.sampled_from(PATHS), body=json_values)
async def test_random_json_bodies(fuzzed: Fuzzed, path: str, body: Any) -> None:
    response = await fuzzed.client.post(f"/v1/async/{path}", content=json.dumps(body).encode())
    assert response.status_code in (202, 400), response.text
    assert_contract_error(response)


@FUZZ
@given(
    path=st.sampled_from(PATHS),
    content_type=st.sampled_from(
        [
            "multipart/form-data; boundary=xyz",
            "multipart/form-data",
            "application/json",
            "text/plain",
            "multipart/form-data; boundary=",
            "application/x-www-form-urlencoded",
            "multipart/mixed; boundary=xyz",
        ]
    ),
    body=st.binary(max_size=300),
)
async def test_random_bytes_and_content_types(
    fuzzed: Fuzzed, path: str, content_type: str, body: bytes
) -> None:
    response = await fuzzed.client.post(
        f"/v1/async/{path}", content=body, headers={"content-type": content_type}
    )
    assert response.status_code in (202, 400), response.text
    assert_contract_error(response)


def multipart(boundary: bytes, model: bytes = b"m") -> bytes:
    return (
        b"--" + boundary + b'\r\nContent-Disposition: form-data; name="model"\r\n\r\n' + model + b"\r\n"
        b"--" + boundary + b'\r\nContent-Disposition: form-data; name="file"; filename="a.wav"\r\n'
        b"Content-Type: audio/wav\r\n\r\nRIFFdata\r\n--" + boundary + b"--\r\n"
    )


@FUZZ
@given(cut=st.integers(min_value=0, max_value=200), junk=st.binary(max_size=20), where=st.integers(0, 200))
async def test_broken_multipart(fuzzed: Fuzzed, cut: int, junk: bytes, where: int) -> None:
    body = multipart(b"xyz")
    broken = body[: where % len(body)] + junk + body[where % len(body) :]
    broken = broken[: len(broken) - cut % len(broken)]
    response = await fuzzed.client.post(
        "/v1/async/audio/transcriptions",
        content=broken,
        headers={"content-type": "multipart/form-data; boundary=xyz"},
    )
    assert response.status_code in (202, 400), response.text
    assert_contract_error(response)


@FUZZ
@given(
    name=st.sampled_from(
        ["authorization", "x-api-key", "x-request-id", "x-bf-async-job-result-ttl", "x-odd"]
    ),
    value=header_bytes,
)
async def test_binary_header_values(fuzzed: Fuzzed, name: str, value: bytes) -> None:
    response = await fuzzed.client.post(
        "/v1/async/embeddings", json={"model": "m", "input": "x"}, headers=[(name.encode(), value)]
    )
    assert response.status_code == 202, response.text
    job = response.json()
    assert job["request_id"] and len(job["request_id"]) <= 200


@FUZZ
@given(ttl=st.text(max_size=30))
async def test_random_ttl_headers(fuzzed: Fuzzed, ttl: str) -> None:
    raw = ttl.encode("utf-8").replace(b"\r", b"").replace(b"\n", b"").replace(b"\x00", b"")
    response = await fuzzed.client.post(
        "/v1/async/embeddings",
        json={"model": "m", "input": "x"},
        headers=[(b"x-bf-async-job-result-ttl", raw)],
    )
    assert response.status_code == 202
    stored = await fuzzed.middleware.store.get(response.json()["id"])  # type: ignore[union-attr]
    assert stored is not None and 1 <= stored.ttl <= fuzzed.middleware.config.max_ttl


@FUZZ
# "." and ".." are dot-segments: HTTP clients resolve them away before sending, onto other routes
@given(job_id=st.text(min_size=1, max_size=80).filter(lambda s: s not in (".", "..")))
async def test_odd_job_ids_are_404(fuzzed: Fuzzed, job_id: str) -> None:
    quoted = urllib.parse.quote(job_id, safe="")
    response = await fuzzed.client.get(f"/v1/async/audio/transcriptions/{quoted}")
    assert response.status_code == 404, response.text
    assert_contract_error(response)


async def test_huge_headers_are_431(serve: Any, http: httpx.AsyncClient) -> None:
    stack = await build_stack(serve, max_header_bytes=4096)
    response = await stack.submit(http, "embeddings", json={"model": "m"}, headers={"x-big": "a" * 5000})
    assert response.status_code == 431
    assert response.json()["error"]["message"] == "request headers exceed the limit of 4096 bytes"
    ok = await stack.submit(http, "embeddings", json={"model": "m", "input": "x"})
    assert ok.status_code == 202


async def raw_request(port: int, data: bytes) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(data)
    await writer.drain()
    try:
        return await asyncio.wait_for(reader.read(65536), 10)
    finally:
        writer.close()


async def test_client_disconnect_mid_upload_creates_no_job(serve: Any, http: httpx.AsyncClient) -> None:
    stack = await build_stack(serve)
    disconnected = asyncio.Event()
    submits = stack.middleware.router.collection  # the router's method table of submit paths
    original = submits["POST"]

    async def watched(*args: Any) -> None:
        try:
            await original(*args)
        finally:
            disconnected.set()

    submits["POST"] = watched
    _reader, writer = await asyncio.open_connection("127.0.0.1", stack.server.port)
    writer.write(
        b"POST /v1/async/embeddings HTTP/1.1\r\nhost: t\r\ncontent-type: application/json\r\n"
        b"content-length: 1000000\r\n\r\n" + b'{"model": "m", "input": "' + b"x" * 50_000
    )
    await writer.drain()
    writer.close()
    await asyncio.wait_for(disconnected.wait(), 10)
    assert len(stack.middleware.store) == 0  # type: ignore[arg-type]
    assert stack.recorder.events == []
    ok = await stack.submit(http, "embeddings", json={"model": "m", "input": "x"})
    assert (await stack.finish(http, "embeddings", ok)).json()["status"] == "completed"


async def test_raw_hostile_requests_keep_the_server_up(serve: Any, http: httpx.AsyncClient) -> None:
    stack = await build_stack(serve)
    port = stack.server.port
    hostile = [
        b"POST /v1/async/embeddings HTTP/1.1\r\nhost: t\r\nx-api-key: \xff\xfe\x80\r\n"
        b"content-length: 2\r\n\r\n{}",
        b"GET /v1/async/embeddings/%00%ff HTTP/1.1\r\nhost: t\r\n\r\n",
        b"GET /v1/async/embeddings/..%2f..%2fetc HTTP/1.1\r\nhost: t\r\n\r\n",
        b"POST /v1/async/audio/transcriptions HTTP/1.1\r\nhost: t\r\ncontent-type: multipart/form-data; "
        b"boundary=\xff\r\ncontent-length: 5\r\n\r\nhello",
    ]
    for data in hostile:
        answer = await raw_request(port, data)
        status = int(answer.split(b" ", 2)[1])
        assert status < 500, answer
    ok = await stack.submit(http, "embeddings", json={"model": "m", "input": "x"})
    assert (await stack.finish(http, "embeddings", ok)).json()["status"] == "completed"


async def broken_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """Misbehaves according to the path it is replayed to."""
    if scope["type"] != "http":
        return
    kind = scope["path"].rsplit("/", 1)[-1]
    if kind == "embeddings":  # raises after starting the response
        await send({"type": "http.response.start", "status": 200, "headers": []})
        raise RuntimeError("half-way")
    if kind == "rerank":  # body without a start
        await send({"type": "http.response.body", "body": b"orphan body"})
        return
    if kind == "ocr":  # invalid status
        await send({"type": "http.response.start", "status": "abc", "headers": []})


@pytest.mark.parametrize("path", ["embeddings", "rerank", "ocr"])
async def test_broken_app_responses_fail_their_jobs(serve: Any, http: httpx.AsyncClient, path: str) -> None:
    stack = await build_stack(serve, app=broken_app)
    submitted = await stack.submit(http, path, json={"model": "m", "input": "x"})
    job = (await stack.finish(http, path, submitted)).json()
    assert job["status"] == "failed" and job["status_code"] == 500, job


@pytest.mark.slow
async def test_overload_every_submit_is_202_or_429_and_every_job_ends(serve: Any) -> None:
    """2,000 submits at 50 in flight against 2 workers and a queue of 100: accepted work all
    ends, refusals are clean 429s, and memory stays bounded."""
    stack = await build_stack(serve, concurrency=2, queue_size=100)
    statuses: dict[int, int] = {}
    accepted: list[str] = []
    tracemalloc.start()
    try:
        limits = httpx.Limits(max_connections=50, max_keepalive_connections=50)
        async with httpx.AsyncClient(limits=limits, timeout=60) as client:
            gate = asyncio.Semaphore(50)

            async def one(n: int) -> None:
                async with gate:
                    response = await stack.submit(client, "embeddings", json={"model": "m", "input": str(n)})
                statuses[response.status_code] = statuses.get(response.status_code, 0) + 1
                if response.status_code == 202:
                    accepted.append(response.json()["id"])
                else:
                    assert response.status_code == 429 and response.headers["retry-after"] == "1"

            await asyncio.gather(*(one(n) for n in range(2000)))
            for job_id in accepted:
                await stack.recorder.wait("finished", job_id, timeout=60)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert set(statuses) <= {202, 429} and sum(statuses.values()) == 2000
    assert statuses.get(202, 0) >= 100
    finished = stack.recorder.finished()
    assert all(finished[job_id].status.value == "completed" for job_id in accepted)
    print(f"overload: {statuses}, peak traced memory {peak / 2**20:.1f} MiB")
    assert peak < 64 * 2**20
