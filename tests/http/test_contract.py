"""The contract, row by row, through a real uvicorn server and a real HTTP client."""

from __future__ import annotations

import base64
from typing import Any

import httpx
import pytest

from bifrost_async.service.routes import DEFAULT_ROUTES, RouteSpec
from tests.apps import SPEECH_BYTES
from tests.helpers import RFC3339, UUID4, build_stack

AUDIO = b"RIFF" + b"\x00" * 2048


def request_for(spec: RouteSpec, model: str = "openai/test-model", **fields: Any) -> dict[str, Any]:
    """httpx keyword arguments for a valid submit of ``spec``."""
    if spec.body == "multipart":
        data = {"model": model, **fields}
        return {"data": data, "files": {spec.file_fields[0]: ("clip.wav", AUDIO, "audio/wav")}}
    return {"json": {"model": model, "input": "hello", **fields}}


@pytest.fixture
async def stack(serve: Any) -> Any:
    return await build_stack(serve)


@pytest.mark.parametrize("spec", DEFAULT_ROUTES, ids=lambda s: s.request_type)
async def test_every_type_round_trips(stack: Any, http: httpx.AsyncClient, spec: RouteSpec) -> None:
    submitted = await stack.submit(http, spec.path, **request_for(spec), headers={"x-request-id": "req-42"})
    assert submitted.status_code == 202
    body = submitted.json()
    assert set(body) == {"id", "request_id", "status", "created_at"}
    assert UUID4.fullmatch(body["id"]) and body["request_id"] == "req-42" and body["status"] == "pending"
    assert RFC3339.fullmatch(body["created_at"])
    assert submitted.headers["location"] == f"/v1/async/{spec.path}/{body['id']}"
    assert submitted.headers["retry-after"] == "1"

    done = await stack.finish(http, spec.path, submitted)
    assert done.status_code == 200
    job = done.json()
    assert job["status"] == "completed" and job["status_code"] == 200 and job["id"] == body["id"]
    assert RFC3339.fullmatch(job["completed_at"]) and RFC3339.fullmatch(job["expires_at"])
    assert "error" not in job
    if spec.request_type == "speech":
        assert job["result"] == {
            "audio": base64.b64encode(SPEECH_BYTES).decode(),
            "content_type": "audio/mpeg",
        }
    elif spec.body == "multipart":
        assert job["result"]["path"] == spec.sync_path
        assert job["result"]["sizes"] == {spec.file_fields[0]: len(AUDIO)}
    else:
        assert job["result"]["path"] == spec.sync_path
        assert job["result"]["echo"]["input"] == "hello"


async def test_request_id_is_generated_without_header(stack: Any, http: httpx.AsyncClient) -> None:
    submitted = await stack.submit(http, "embeddings", json={"model": "m", "input": "x"})
    assert UUID4.fullmatch(submitted.json()["request_id"])
    assert submitted.json()["request_id"] != submitted.json()["id"]


async def test_poll_answers_202_while_pending_and_processing(stack: Any, http: httpx.AsyncClient) -> None:
    gate = stack.app.state.gate
    submitted = await stack.submit(http, "chat/completions", json={"model": "test/gate", "messages": []})
    job_id = submitted.json()["id"]
    await stack.recorder.wait("started", job_id)
    await gate.arrived.wait()
    polled = await http.get(f"{stack.url}/v1/async/chat/completions/{job_id}")
    assert polled.status_code == 202
    assert polled.json()["status"] == "processing"
    assert set(polled.json()) == {"id", "request_id", "status", "created_at"}
    assert polled.headers["retry-after"] == "1"
    gate.opened.set()
    done = await stack.finish(http, "chat/completions", submitted)
    assert done.status_code == 200 and done.json()["status"] == "completed"


async def test_pending_job_answers_202_pending(serve: Any, http: httpx.AsyncClient) -> None:
    stack = await build_stack(serve, concurrency=1)
    first = await stack.submit(http, "chat/completions", json={"model": "test/gate"})
    await stack.app.state.gate.arrived.wait()
    second = await stack.submit(http, "chat/completions", json={"model": "test/ok"})
    polled = await http.get(f"{stack.url}/v1/async/chat/completions/{second.json()['id']}")
    assert polled.status_code == 202 and polled.json()["status"] == "pending"
    stack.app.state.gate.opened.set()
    assert (await stack.finish(http, "chat/completions", first)).json()["status"] == "completed"
    assert (await stack.finish(http, "chat/completions", second)).json()["status"] == "completed"


@pytest.mark.parametrize(
    ("response_format", "expected"),
    [
        ("text", {"text": f"heard {len(AUDIO)} bytes"}),
        ("srt", {"text": f"1\n00:00:00,000 --> 00:00:01,000\nheard {len(AUDIO)} bytes\n"}),
        ("vtt", {"text": f"WEBVTT\n\n00:00.000 --> 00:01.000\nheard {len(AUDIO)} bytes\n"}),
    ],
)
async def test_text_results(stack: Any, http: httpx.AsyncClient, response_format: str, expected: Any) -> None:
    spec = next(s for s in DEFAULT_ROUTES if s.request_type == "transcription")
    submitted = await stack.submit(http, spec.path, **request_for(spec, response_format=response_format))
    done = await stack.finish(http, spec.path, submitted)
    assert done.json()["result"] == expected


async def test_upstream_openai_error_becomes_failed_job(stack: Any, http: httpx.AsyncClient) -> None:
    submitted = await stack.submit(http, "chat/completions", json={"model": "test/error", "messages": []})
    # the model string has no provider prefix we know of: "test" is taken as the provider
    done = await stack.finish(http, "chat/completions", submitted)
    assert done.status_code == 200
    job = done.json()
    assert job["status"] == "failed" and job["status_code"] == 400
    assert "result" not in job
    error = job["error"]
    assert error["status_code"] == 400 and error["is_bifrost_error"] is False
    assert error["error"] == {
        "message": "model test/error cannot do that",
        "type": "invalid_request_error",
        "code": "bad_model",
        "param": "model",
    }
    assert error["extra_fields"] == {
        "provider": "test",
        "model_requested": "error",
        "request_type": "chat_completion",
    }


async def test_upstream_text_error(stack: Any, http: httpx.AsyncClient) -> None:
    submitted = await stack.submit(http, "embeddings", json={"model": "test/plain-error", "input": "x"})
    job = (await stack.finish(http, "embeddings", submitted)).json()
    assert job["status"] == "failed" and job["status_code"] == 503
    assert job["error"]["error"]["message"] == "upstream overloaded"


async def test_app_exception_fails_job_with_500_and_no_detail(stack: Any, http: httpx.AsyncClient) -> None:
    submitted = await stack.submit(http, "embeddings", json={"model": "test/crash", "input": "x"})
    job = (await stack.finish(http, "embeddings", submitted)).json()
    assert job["status"] == "failed" and job["status_code"] == 500
    assert "crashed" in job["error"]["error"]["message"]
    assert "secret-internal-detail" not in str(job)
    assert "Traceback" not in str(job)


async def test_timeout_fails_job_with_504(serve: Any, http: httpx.AsyncClient) -> None:
    stack = await build_stack(serve, job_timeout=0.3)
    submitted = await stack.submit(http, "embeddings", json={"model": "test/hang", "input": "x"})
    job = (await stack.finish(http, "embeddings", submitted)).json()
    assert job["status"] == "failed" and job["status_code"] == 504
    assert "timeout" in job["error"]["error"]["message"]
    # the worker slot is free again: a normal job still runs
    again = await stack.submit(http, "embeddings", json={"model": "test/ok", "input": "x"})
    assert (await stack.finish(http, "embeddings", again)).json()["status"] == "completed"


async def test_no_response_fails_job(serve: Any, http: httpx.AsyncClient) -> None:
    from tests.apps import silent

    stack = await build_stack(serve, app=silent)
    submitted = await stack.submit(http, "embeddings", json={"model": "m", "input": "x"})
    job = (await stack.finish(http, "embeddings", submitted)).json()
    assert job["status"] == "failed" and job["status_code"] == 500
    assert "without sending a response" in job["error"]["error"]["message"]


async def test_result_too_large_fails_job(serve: Any, http: httpx.AsyncClient) -> None:
    stack = await build_stack(serve, max_result_bytes=100)
    submitted = await stack.submit(http, "embeddings", json={"model": "m", "input": "x" * 500})
    job = (await stack.finish(http, "embeddings", submitted)).json()
    assert job["status"] == "failed" and job["status_code"] == 502
    assert "100 bytes" in job["error"]["error"]["message"]


async def test_non_async_routes_pass_through(stack: Any, http: httpx.AsyncClient) -> None:
    plain = await http.get(f"{stack.url}/plain")
    assert plain.status_code == 200 and plain.text == "untouched"
    sync = await http.post(f"{stack.url}/v1/embeddings", json={"model": "m", "input": "x"})
    assert sync.status_code == 200 and sync.json()["echo"]["input"] == "x"
    async with http.stream("GET", f"{stack.url}/stream") as streamed:
        chunks = [chunk async for chunk in streamed.aiter_text()]
    assert "".join(chunks) == "data: 0\n\ndata: 1\n\ndata: 2\n\n"
    missing = await http.get(f"{stack.url}/nope")
    assert missing.status_code == 404 and missing.text == "Not Found"  # Starlette's own answer
    assert stack.recorder.events == []


async def test_replay_carries_query_headers_and_lifespan_state(stack: Any, http: httpx.AsyncClient) -> None:
    submitted = await stack.submit(
        http,
        "embeddings?dimensions=3",
        json={"model": "m", "input": "x"},
        headers={"authorization": "Bearer sk-abc"},
    )
    done = await stack.finish(http, "embeddings", submitted, headers={"authorization": "Bearer sk-abc"})
    result = done.json()["result"]
    assert result["query"] == "dimensions=3"
    assert result["authorization"] == "Bearer sk-abc"
    assert result["lifespan_state"] == "yes"
