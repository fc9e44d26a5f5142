"""Header-driven async (``x-bf-async`` / ``x-bf-async-id``) on provider routes, through the
middleware on a real uvicorn: both providers' shapes, each status, the 404 causes, header
precedence, TTL, and the unsupported-route 400."""

from __future__ import annotations

import time
from typing import Any

import httpx
import pytest

from tests.helpers import UUID4, Stack, build_stack

ASYNC = {"x-bf-async": "true"}
OPENAI = "/v1/responses"
ANTHROPIC = "/anthropic/v1/messages"


@pytest.fixture
async def stack(serve: Any) -> Stack:
    return await build_stack(serve)


async def _submit(stack: Stack, http: httpx.AsyncClient, path: str, model: str, **headers: str) -> str:
    answer = await http.post(
        stack.url + path, json={"model": model, "input": "hi"}, headers={**ASYNC, **headers}
    )
    assert answer.status_code == 200, answer.text
    job_id = str(answer.json()["id"])
    assert UUID4.fullmatch(job_id)
    return job_id


async def _retrieve(
    stack: Stack, http: httpx.AsyncClient, path: str, job_id: str, **kw: Any
) -> httpx.Response:
    headers = {"x-bf-async-id": job_id, **kw.pop("headers", {})}
    return await http.post(stack.url + path, content=kw.pop("content", b"{}"), headers=headers, **kw)


async def test_openai_route_submit_pending_processing_completed(
    stack: Stack, http: httpx.AsyncClient
) -> None:
    try:
        await _gated_job_lifecycle(stack, http)
    finally:
        stack.app.state.gate.opened.set()  # never leave a request hanging in the app


async def _gated_job_lifecycle(stack: Stack, http: httpx.AsyncClient) -> None:
    submitted = await http.post(
        stack.url + OPENAI, json={"model": "test/gate", "input": "hi"}, headers=ASYNC, timeout=15
    )
    assert submitted.status_code == 200
    body = submitted.json()
    assert body["object"] == "response" and body["status"] == "pending" and body["model"] == "test/gate"
    job_id = body["id"]
    await stack.recorder.wait("started", job_id)
    running = await _retrieve(stack, http, OPENAI, job_id)
    assert running.status_code == 200
    assert running.json() == {**body, "status": "processing"}
    stack.app.state.gate.opened.set()
    await stack.recorder.wait("finished", job_id)
    done = await _retrieve(stack, http, OPENAI, job_id, content=b"not json at all")
    assert done.status_code == 200
    # the upstream's own answer as sent, replayed to the same path without our headers
    assert done.json()["path"] == OPENAI and done.json()["echo"] == {"model": "test/gate", "input": "hi"}
    same = await http.get(f"{stack.url}/v1/async/responses/{job_id}")
    assert same.status_code == 200 and same.json()["status"] == "completed"


async def test_anthropic_route_shape_and_result(stack: Stack, http: httpx.AsyncClient) -> None:
    submitted = await http.post(
        stack.url + ANTHROPIC, json={"model": "claude-x", "input": "hi"}, headers=ASYNC
    )
    assert submitted.status_code == 200
    body = submitted.json()
    assert body == {
        "id": body["id"],
        "type": "message",
        "role": "assistant",
        "content": [],
        "model": "claude-x",
    }
    await stack.recorder.wait("finished", body["id"])
    done = await _retrieve(stack, http, ANTHROPIC, body["id"])
    assert done.status_code == 200 and done.json()["path"] == ANTHROPIC


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        (OPENAI, {"message": "model test/error cannot do that", "type": "invalid_request_error"}),
        (
            ANTHROPIC,
            {
                "type": "error",
                "error": {"type": "invalid_request_error", "message": "model test/error cannot do that"},
            },
        ),
    ],
)
async def test_failed_job_is_the_upstream_error_in_the_route_shape(
    stack: Stack, http: httpx.AsyncClient, path: str, expected: dict[str, Any]
) -> None:
    job_id = await _submit(stack, http, path, "test/error")
    await stack.recorder.wait("finished", job_id)
    failed = await _retrieve(stack, http, path, job_id)
    assert failed.status_code == 400
    if path == OPENAI:  # Bifrost's error object
        assert failed.json()["status_code"] == 400 and failed.json()["error"].items() >= expected.items()
    else:
        assert failed.json() == expected


async def test_404_causes_in_the_route_shape(stack: Stack, http: httpx.AsyncClient) -> None:
    vk = {"x-bf-vk": "sk-bf-owner"}
    mine = await _submit(stack, http, OPENAI, "test/ok", **vk)
    anthropic = await _submit(stack, http, ANTHROPIC, "test/ok")
    chat = await http.post(
        f"{stack.url}/v1/async/chat/completions", json={"model": "test/ok", "messages": []}
    )
    assert chat.status_code == 202
    causes = [
        (OPENAI, "8e0f4b1c-2d3e-4f5a-8b6c-7d8e9f0a1b2c", {}),  # unknown
        (OPENAI, "not-a-job-id", {}),
        (OPENAI, mine, {"x-bf-vk": "sk-bf-other"}),  # another owner
        (OPENAI, mine, {}),  # no key
        (OPENAI, anthropic, {}),  # the other provider's job: we do not convert
        (ANTHROPIC, mine, vk),
        (OPENAI, chat.json()["id"], {}),  # a job of another type
    ]
    for path, job_id, headers in causes:
        answer = await _retrieve(stack, http, path, job_id, headers=headers)
        assert answer.status_code == 404, (path, job_id, headers)
        if path == OPENAI:
            assert answer.json()["error"]["message"] == "job not found or expired"
        else:
            assert answer.json() == {
                "type": "error",
                "error": {"type": "not_found_error", "message": "job not found or expired"},
            }
    assert (
        await _retrieve(stack, http, OPENAI, mine, headers={"authorization": "Bearer sk-bf-owner"})
    ).status_code == 200


async def test_async_id_wins_and_false_values_are_absent(stack: Stack, http: httpx.AsyncClient) -> None:
    job_id = await _submit(stack, http, OPENAI, "test/ok")
    await stack.recorder.wait("finished", job_id)
    submitted = len([kind for kind, _ in stack.recorder.events if kind == "submitted"])
    both = await _retrieve(stack, http, OPENAI, job_id, headers=ASYNC, content=b"")
    assert both.status_code == 200 and both.json()["path"] == OPENAI
    assert len([kind for kind, _ in stack.recorder.events if kind == "submitted"]) == submitted
    for value in ("false", "0", "no", "FALSE", ""):
        direct = await http.post(stack.url + OPENAI, json={"model": "test/ok"}, headers={"x-bf-async": value})
        assert direct.status_code == 200 and direct.json()["path"] == OPENAI, value  # the app itself
    empty_id = await http.post(
        stack.url + OPENAI, json={"model": "test/ok"}, headers={**ASYNC, "x-bf-async-id": ""}
    )
    assert empty_id.json()["object"] == "response"  # an empty id counts as absent: a submit


async def test_unsupported_route_and_streaming_get_400(stack: Stack, http: httpx.AsyncClient) -> None:
    for path in ("/v1/chat/completions", "/v1/embeddings", "/openai/v1/chat/completions"):
        answer = await http.post(stack.url + path, json={"model": "test/ok"}, headers=ASYNC)
        assert answer.status_code == 400, path
        assert answer.json()["error"]["message"] == "async operation is not supported on this route"
    plain = await http.get(stack.url + "/plain", headers=ASYNC)
    assert plain.text == "untouched"  # everywhere else the header is ignored
    streaming = await http.post(stack.url + OPENAI, json={"model": "test/ok", "stream": True}, headers=ASYNC)
    assert streaming.status_code == 400
    assert streaming.json()["error"]["message"] == "streaming is not supported for async requests"
    anthropic = await http.post(stack.url + ANTHROPIC, json={"model": "m", "stream": True}, headers=ASYNC)
    assert anthropic.status_code == 400 and anthropic.json()["type"] == "error"


async def test_ttl_header_is_honoured_and_expiry_is_404(serve: Any, http: httpx.AsyncClient) -> None:
    now = [time.time()]
    stack = await build_stack(serve, clock=lambda: now[0])
    job_id = await _submit(stack, http, OPENAI, "test/ok", **{"x-bf-async-job-result-ttl": "120"})
    await stack.recorder.wait("finished", job_id)
    job = stack.recorder.finished()[job_id]
    assert job.expires_at is not None and job.completed_at is not None
    assert job.expires_at - job.completed_at == 120
    now[0] += 121
    assert (await _retrieve(stack, http, OPENAI, job_id)).status_code == 404


async def test_the_route_set_is_configuration(serve: Any, http: httpx.AsyncClient) -> None:
    stack = await build_stack(serve, header_async_routes={"/v1/audio/diarize": "anthropic", OPENAI: "off"})
    direct = await http.post(stack.url + OPENAI, json={"model": "test/ok"}, headers=ASYNC)
    assert direct.json()["path"] == OPENAI  # turned off: passed through
    added = await http.post(stack.url + "/v1/audio/diarize", json={"model": "m"}, headers=ASYNC)
    assert added.status_code == 200 and added.json()["type"] == "message"
    kept = await http.post(stack.url + "/openai/v1/responses", json={"model": "test/ok"}, headers=ASYNC)
    assert kept.json()["object"] == "response"
