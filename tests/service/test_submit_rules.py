"""Submit refusals (400, 405, 413, 429, 503), TTL, expiry and ownership, through a real server."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import httpx
import pytest

from bifrost_async.errors import NOT_FOUND_MESSAGE
from bifrost_async.service.routes import DEFAULT_ROUTES
from bifrost_async.testing import FakeClock
from tests.helpers import build_stack

SPECS = {spec.request_type: spec for spec in DEFAULT_ROUTES}
WAV = ("clip.wav", b"RIFF0000", "audio/wav")


@pytest.fixture
async def stack(serve: Any) -> Any:
    return await build_stack(serve, max_body_bytes=64 * 1024)


def assert_error(response: httpx.Response, status: int, message: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    assert body["error"]["message"] == message
    assert body["status_code"] == status
    assert body["extra_fields"] == {}
    return body


def stored_jobs(stack: Any) -> int:
    return len(stack.middleware.store)


async def test_body_over_limit_is_413_by_content_length(stack: Any, http: httpx.AsyncClient) -> None:
    response = await stack.submit(http, "embeddings", content=b"x" * (64 * 1024 + 1))
    assert_error(response, 413, "request body exceeds the limit of 65536 bytes")
    assert stored_jobs(stack) == 0


async def test_body_over_limit_is_413_when_chunked(stack: Any, http: httpx.AsyncClient) -> None:
    async def chunks() -> Any:
        for _ in range(40):
            yield b"y" * 4096

    response = await stack.submit(http, "embeddings", content=chunks())
    assert_error(response, 413, "request body exceeds the limit of 65536 bytes")
    assert stored_jobs(stack) == 0


@pytest.mark.parametrize("content", [b"{not json", b"", b"\xff\xfe", b'{"model": "m"'])
async def test_malformed_json_is_400(stack: Any, http: httpx.AsyncClient, content: bytes) -> None:
    response = await stack.submit(http, "chat/completions", content=content)
    assert_error(response, 400, "malformed JSON in request body")


async def test_json_that_is_not_an_object_is_400(stack: Any, http: httpx.AsyncClient) -> None:
    response = await stack.submit(http, "chat/completions", json=["model"])
    assert_error(response, 400, "request body must be a JSON object")


@pytest.mark.parametrize(
    ("headers", "content"),
    [
        ({"content-type": "multipart/form-data; boundary=abc"}, b"--abc\r\nbroken"),
        ({"content-type": "multipart/form-data; boundary=abc"}, b"no boundary at all"),
        ({"content-type": "multipart/form-data"}, b"--abc\r\n"),
        ({"content-type": "application/json"}, b'{"model": "whisper-1"}'),
    ],
)
async def test_unparseable_multipart_is_400(
    stack: Any, http: httpx.AsyncClient, headers: dict[str, str], content: bytes
) -> None:
    response = await stack.submit(http, "audio/transcriptions", content=content, headers=headers)
    assert response.status_code == 400
    assert "multipart" in response.json()["error"]["message"]
    assert stored_jobs(stack) == 0


@pytest.mark.parametrize(
    ("path", "kwargs", "noun", "param"),
    [
        ("completions", {"json": {"model": "m", "stream": True}}, "text completions", "stream"),
        ("chat/completions", {"json": {"model": "m", "stream": True}}, "chat completions", "stream"),
        ("responses", {"json": {"model": "m", "stream": True}}, "responses", "stream"),
        ("images/generations", {"json": {"model": "m", "stream": True}}, "image generations", "stream"),
        ("audio/speech", {"json": {"model": "m", "stream_format": "sse"}}, "speech", "stream_format"),
        # values a lax parser (pydantic: FastAPI, vLLM, LiteLLM) reads as true would stream too
        ("chat/completions", {"json": {"model": "m", "stream": "true"}}, "chat completions", "stream"),
        ("chat/completions", {"json": {"model": "m", "stream": 1}}, "chat completions", "stream"),
        ("responses", {"json": {"model": "m", "stream": " Yes "}}, "responses", "stream"),
        ("audio/speech", {"json": {"model": "m", "stream_format": "SSE"}}, "speech", "stream_format"),
        (
            "audio/transcriptions",
            {"data": {"model": "m", "stream": "on"}, "files": {"file": WAV}},
            "transcriptions",
            "stream",
        ),
        (
            "audio/transcriptions",
            {"data": {"model": "m", "stream": "true"}, "files": {"file": WAV}},
            "transcriptions",
            "stream",
        ),
        (
            "images/edits",
            {"data": {"model": "m", "stream": "True"}, "files": {"image": WAV}},
            "image edits",
            "stream",
        ),
    ],
)
async def test_stream_is_refused(
    stack: Any, http: httpx.AsyncClient, path: str, kwargs: dict[str, Any], noun: str, param: str
) -> None:
    response = await stack.submit(http, path, **kwargs)
    body = assert_error(response, 400, f"stream is not supported for async {noun}")
    assert body["error"]["param"] == param
    assert stored_jobs(stack) == 0


@pytest.mark.parametrize(
    ("path", "kwargs"),
    [
        ("chat/completions", {"json": {"model": "m", "stream": False}}),
        ("chat/completions", {"json": {"model": "m", "stream": "false"}}),
        ("chat/completions", {"json": {"model": "m", "stream": 0}}),
        ("chat/completions", {"json": {"model": "m", "stream": None}}),
        ("audio/speech", {"json": {"model": "m", "stream_format": "audio"}}),
        ("audio/transcriptions", {"data": {"model": "m", "stream": "false"}, "files": {"file": WAV}}),
        ("embeddings", {"json": {"model": "m", "stream": True}}),  # embeddings have no stream field
    ],
)
async def test_stream_false_is_accepted(
    stack: Any, http: httpx.AsyncClient, path: str, kwargs: dict[str, Any]
) -> None:
    response = await stack.submit(http, path, **kwargs)
    assert response.status_code == 202, response.text


@pytest.mark.parametrize(
    ("path", "kwargs"),
    [
        ("chat/completions", {"json": {"messages": []}}),
        ("embeddings", {"json": {"model": "", "input": "x"}}),
        ("embeddings", {"json": {"model": 7, "input": "x"}}),
        ("audio/transcriptions", {"data": {"language": "en"}, "files": {"file": WAV}}),
        ("images/variations", {"data": {"n": "1"}, "files": {"image": WAV}}),
    ],
)
async def test_missing_model_is_400(stack: Any, http: httpx.AsyncClient, path: str, kwargs: Any) -> None:
    body = assert_error(await stack.submit(http, path, **kwargs), 400, "model is required")
    assert body["error"]["param"] == "model"


@pytest.mark.parametrize(
    ("path", "field"),
    [("audio/transcriptions", "file"), ("images/edits", "image"), ("images/variations", "image")],
)
async def test_missing_file_is_400(stack: Any, http: httpx.AsyncClient, path: str, field: str) -> None:
    response = await stack.submit(http, path, data={"model": "m"}, files={"other": WAV})
    body = assert_error(response, 400, f"{field} is required")
    assert body["error"]["param"] == field


async def test_validation_order_size_before_format(stack: Any, http: httpx.AsyncClient) -> None:
    response = await stack.submit(http, "chat/completions", content=b"{" * (64 * 1024 + 10))
    assert response.status_code == 413


async def test_wrong_methods_and_unknown_routes(stack: Any, http: httpx.AsyncClient) -> None:
    on_submit = await http.put(f"{stack.url}/v1/async/chat/completions")
    assert on_submit.status_code == 405 and on_submit.headers["allow"] == "GET, HEAD, POST"  # GET: list
    on_poll = await http.post(f"{stack.url}/v1/async/chat/completions/abc")
    assert on_poll.status_code == 405 and on_poll.headers["allow"] == "GET, HEAD, DELETE"  # DELETE: cancel
    unknown = await http.post(f"{stack.url}/v1/async/nothing/here", json={"model": "m"})
    assert unknown.status_code == 404 and unknown.json()["error"]["code"] == "unknown_route"


async def test_queue_full_is_429_with_retry_after(serve: Any, http: httpx.AsyncClient) -> None:
    stack = await build_stack(serve, concurrency=1, queue_size=2, owner_queue_size=0)  # the global bound
    gate = stack.app.state.gate
    running = await stack.submit(http, "embeddings", json={"model": "test/gate", "input": "x"})
    await gate.arrived.wait()
    queued = [
        await stack.submit(http, "embeddings", json={"model": "test/ok", "input": "x"}) for _ in range(2)
    ]
    assert [r.status_code for r in queued] == [202, 202]
    refused = await stack.submit(http, "embeddings", json={"model": "test/ok", "input": "x"})
    assert_error(refused, 429, "the job queue is full; retry later")
    assert refused.headers["retry-after"] == "1"
    assert stored_jobs(stack) == 3
    gate.opened.set()
    for response in [running, *queued]:
        assert (await stack.finish(http, "embeddings", response)).json()["status"] == "completed"
    again = await stack.submit(http, "embeddings", json={"model": "test/ok", "input": "x"})
    assert again.status_code == 202


async def test_store_full_is_503_and_keeps_stored_jobs(serve: Any, http: httpx.AsyncClient) -> None:
    stack = await build_stack(serve, max_jobs=2, owner_max_jobs=0)  # the global bound
    kept = [await stack.submit(http, "embeddings", json={"model": "m", "input": str(n)}) for n in range(2)]
    refused = await stack.submit(http, "embeddings", json={"model": "m", "input": "x"})
    assert refused.status_code == 503 and refused.headers["retry-after"] == "1"
    assert "maximum of 2 jobs" in refused.json()["error"]["message"]
    for response in kept:
        assert (await stack.finish(http, "embeddings", response)).json()["status"] == "completed"


def _seconds(job: dict[str, Any], start: str, end: str) -> float:
    parse = datetime.fromisoformat
    return (parse(job[end]) - parse(job[start])).total_seconds()


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        (None, 3600),
        ("", 3600),
        ("abc", 3600),
        ("1.5", 3600),
        ("0", 3600),
        ("-5", 3600),
        ("90", 90),
        ("+120", 120),
        ("7200", 7200),
        ("86401", 86400),
        ("9" * 40, 86400),
    ],
)
async def test_ttl_header(serve: Any, http: httpx.AsyncClient, header: str | None, expected: int) -> None:
    stack = await build_stack(serve, max_ttl=86400)
    headers = {} if header is None else {"x-bf-async-job-result-ttl": header}
    submitted = await stack.submit(http, "embeddings", json={"model": "m", "input": "x"}, headers=headers)
    job = (await stack.finish(http, "embeddings", submitted)).json()
    assert _seconds(job, "completed_at", "expires_at") == pytest.approx(expected, abs=0.002)


async def test_expired_job_is_404_at_once(serve: Any, http: httpx.AsyncClient) -> None:
    clock = FakeClock()
    stack = await build_stack(serve, clock=clock)
    submitted = await stack.submit(
        http, "embeddings", json={"model": "m", "input": "x"}, headers={"x-bf-async-job-result-ttl": "60"}
    )
    assert (await stack.finish(http, "embeddings", submitted)).status_code == 200
    url = f"{stack.url}/v1/async/embeddings/{submitted.json()['id']}"
    clock.advance(59.9)
    assert (await http.get(url)).status_code == 200
    clock.advance(0.1)
    assert_error(await http.get(url), 404, NOT_FOUND_MESSAGE)


async def test_not_found_is_the_same_for_every_cause(stack: Any, http: httpx.AsyncClient) -> None:
    owned = await stack.submit(
        http, "embeddings", json={"model": "m", "input": "x"}, headers={"authorization": "Bearer key-a"}
    )
    await stack.finish(http, "embeddings", owned, headers={"authorization": "Bearer key-a"})
    job_id = owned.json()["id"]
    answers = [
        await http.get(f"{stack.url}/v1/async/embeddings/{'0' * 8}-0000-4000-8000-{'0' * 12}"),
        await http.get(f"{stack.url}/v1/async/embeddings/not-a-uuid"),
        await http.get(f"{stack.url}/v1/async/embeddings/{job_id.upper()}"),
        await http.get(
            f"{stack.url}/v1/async/chat/completions/{job_id}", headers={"authorization": "Bearer key-a"}
        ),
        await http.get(
            f"{stack.url}/v1/async/embeddings/{job_id}", headers={"authorization": "Bearer key-b"}
        ),
        await http.get(f"{stack.url}/v1/async/embeddings/{job_id}"),
        await http.get(f"{stack.url}/v1/async/embeddings/{job_id}", headers={"x-api-key": "key-a"}),
    ]
    bodies = [assert_error(answer, 404, NOT_FOUND_MESSAGE) for answer in answers]
    assert all(body == bodies[0] for body in bodies)


@pytest.mark.parametrize("header", ["x-bf-vk", "authorization", "x-api-key", "x-goog-api-key"])
async def test_owner_credentials(stack: Any, http: httpx.AsyncClient, header: str) -> None:
    submitted = await stack.submit(
        http, "embeddings", json={"model": "m", "input": "x"}, headers={header: "k1"}
    )
    await stack.recorder.wait("finished", submitted.json()["id"])
    url = f"{stack.url}/v1/async/embeddings/{submitted.json()['id']}"
    assert (await http.get(url, headers={header: "k1"})).status_code == 200
    assert (await http.get(url, headers={header: "k2"})).status_code == 404
    assert (await http.get(url)).status_code == 404
    stored = await stack.middleware.store.get(submitted.json()["id"])
    assert stored.owner and "k1" not in stored.owner and len(stored.owner) == 64


async def test_first_credential_header_decides(stack: Any, http: httpx.AsyncClient) -> None:
    both = {"x-bf-vk": "vk-1", "authorization": "Bearer other"}
    submitted = await stack.submit(http, "embeddings", json={"model": "m", "input": "x"}, headers=both)
    await stack.recorder.wait("finished", submitted.json()["id"])
    url = f"{stack.url}/v1/async/embeddings/{submitted.json()['id']}"
    assert (await http.get(url, headers={"x-bf-vk": "vk-1"})).status_code == 200
    assert (await http.get(url, headers={"authorization": "Bearer other"})).status_code == 404


async def test_public_job_is_visible_to_anyone(stack: Any, http: httpx.AsyncClient) -> None:
    submitted = await stack.submit(http, "embeddings", json={"model": "m", "input": "x"})
    await stack.recorder.wait("finished", submitted.json()["id"])
    url = f"{stack.url}/v1/async/embeddings/{submitted.json()['id']}"
    assert (await http.get(url)).status_code == 200
    assert (await http.get(url, headers={"authorization": "Bearer anyone"})).status_code == 200


async def test_head_answers_as_get_without_a_body(stack: Any, http: httpx.AsyncClient) -> None:
    """HEAD works wherever GET does (poll, result, list): same status and headers, no body."""
    auth = {"Authorization": "Bearer sk-head"}  # listing needs an owner
    submitted = await stack.submit(http, "embeddings", json={"model": "m", "input": "x"}, headers=auth)
    poll_url = stack.url + submitted.headers["location"]
    await stack.finish(http, "embeddings", submitted, headers=auth)
    for url in (poll_url, poll_url + "/result", f"{stack.url}/v1/async/embeddings"):
        got = await http.get(url, headers=auth)
        head = await http.head(url, headers=auth)
        assert head.status_code == got.status_code == 200
        assert head.content == b""
        assert head.headers["content-type"] == got.headers["content-type"]
        assert head.headers["content-length"] == str(len(got.content))
    missing = await http.head(f"{stack.url}/v1/async/embeddings/00000000-0000-4000-8000-000000000000")
    assert missing.status_code == 404 and missing.content == b""
