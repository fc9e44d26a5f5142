"""The real ``bifrost-async serve`` subprocess in front of a real aiohttp upstream: async jobs of
every type end to end, and the pass-through of JSON, multipart, binary and SSE."""

from __future__ import annotations

import base64
import hashlib
import json
import os
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from bifrost_async.service.routes import DEFAULT_ROUTES, RouteSpec
from tests.proxy_support import ProxyProcess, run_proxy, wait_job
from tests.proxy_upstream import SPEECH_BYTES, STATE, UpstreamState, make_upstream

AUTH = {"Authorization": "Bearer sk-proxy-test-credential"}
AUDIO = b"RIFF" + os.urandom(3000)


@pytest.fixture
async def upstream(aiohttp_server: Any) -> Any:
    return await aiohttp_server(make_upstream())


@pytest.fixture
async def proxy(upstream: Any) -> AsyncIterator[ProxyProcess]:
    async with run_proxy(f"http://127.0.0.1:{upstream.port}", "--read-timeout", "10") as running:
        yield running


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(timeout=15) as http:
        yield http


def _submit_kwargs(spec: RouteSpec) -> dict[str, Any]:
    model = f"openai/{spec.request_type}-model"
    if spec.body == "multipart":
        data = {"model": model}
        if spec.request_type == "transcription":
            data["response_format"] = "text"
        return {"data": data, "files": {spec.file_fields[0]: ("clip.bin", AUDIO, "application/octet-stream")}}
    return {"json": {"model": model, "input": "hello", "messages": [{"role": "user", "content": "hi"}]}}


@pytest.mark.parametrize("spec", DEFAULT_ROUTES, ids=lambda s: s.request_type)
async def test_async_job_of_every_type_runs_against_the_upstream(
    spec: RouteSpec, proxy: ProxyProcess, upstream: Any, client: httpx.AsyncClient
) -> None:
    submitted = await client.post(f"{proxy.url}/v1/async/{spec.path}", headers=AUTH, **_submit_kwargs(spec))
    assert submitted.status_code == 202, submitted.text
    job = submitted.json()
    assert job["status"] == "pending"
    poll_url = proxy.url + submitted.headers["location"]

    done = await wait_job(client, poll_url, headers=AUTH)
    assert done.status_code == 200
    body = done.json()
    assert body["status"] == "completed", body
    assert body["status_code"] == 200
    digest = hashlib.sha256(AUDIO).hexdigest()
    if spec.request_type == "speech":
        assert base64.b64decode(body["result"]["audio"]) == SPEECH_BYTES
        assert body["result"]["content_type"] == "audio/mpeg"
    elif spec.request_type == "transcription":
        assert body["result"] == {"text": f"transcript of {digest[:12]}"}
    else:
        assert body["result"]["path"] == spec.sync_path
        assert body["result"]["model"] == f"openai/{spec.request_type}-model"
        assert body["result"]["auth"] == {"authorization": AUTH["Authorization"]}
        if spec.body == "multipart":
            assert body["result"]["files"] == {spec.file_fields[0]: digest}

    state: UpstreamState = upstream.app[STATE]
    assert [seen["path"] for seen in state.seen] == [spec.sync_path]
    # Another credential (or none) cannot read the job.
    assert (await client.get(poll_url)).status_code == 404


async def test_upstream_error_fails_the_job_with_its_status(
    proxy: ProxyProcess, client: httpx.AsyncClient
) -> None:
    submitted = await client.post(
        f"{proxy.url}/v1/async/embeddings", json={"model": "fail/422", "input": "x"}
    )
    assert submitted.status_code == 202
    body = (await wait_job(client, proxy.url + submitted.headers["location"])).json()
    assert body["status"] == "failed"
    assert body["status_code"] == 422
    assert body["error"]["error"]["message"] == "upstream refused model fail/422"
    assert body["error"]["error"]["code"] == "bad_model"


async def test_json_passes_through_with_method_path_query_and_headers(
    proxy: ProxyProcess, client: httpx.AsyncClient
) -> None:
    payload = {"model": "m", "messages": [{"role": "user", "content": "héllo"}]}
    response = await client.post(
        f"{proxy.url}/echo/a%20b/c?x=1&y=%2F&y=2",
        json=payload,
        headers={
            **AUTH,
            "X-Api-Key": "key-1",
            "X-Custom": "kept",
            "Connection": "X-Hop-Req",
            "X-Hop-Req": "dropped",
            "Proxy-Authorization": "Basic dropped",
        },
    )
    assert response.status_code == 200
    assert response.json() == payload
    seen = json.loads(response.headers["x-upstream-seen"])
    assert response.headers["x-upstream-path"] == "/echo/a%20b/c?x=1&y=%2F&y=2"  # byte for byte
    assert seen["authorization"] == AUTH["Authorization"]
    assert seen["x-api-key"] == "key-1"
    assert seen["x-custom"] == "kept"
    assert "x-hop-req" not in seen and "proxy-authorization" not in seen
    assert seen["host"] != f"127.0.0.1:{proxy.port}"  # the upstream's own host
    assert seen["x-forwarded-host"] == f"127.0.0.1:{proxy.port}"
    assert "x-hop" not in response.headers  # named in the upstream's Connection header


@pytest.mark.parametrize("method", ["GET", "PUT", "PATCH", "DELETE", "OPTIONS"])
async def test_other_methods_pass_through(
    method: str, proxy: ProxyProcess, client: httpx.AsyncClient
) -> None:
    body = b"payload" if method in ("PUT", "PATCH") else None
    response = await client.request(method, f"{proxy.url}/echo/m?q=1", content=body)
    assert response.status_code == 200
    assert response.headers["x-upstream-method"] == method
    assert response.content == (body or b"")


async def test_multipart_passes_through(proxy: ProxyProcess, client: httpx.AsyncClient) -> None:
    response = await client.post(
        f"{proxy.url}/v1/audio/transcriptions", data={"model": "whisper-1"}, files={"file": ("a.wav", AUDIO)}
    )
    assert response.status_code == 200
    assert response.json()["files"] == {"file": hashlib.sha256(AUDIO).hexdigest()}


async def test_binary_streams_both_ways(proxy: ProxyProcess, client: httpx.AsyncClient) -> None:
    blob = os.urandom(3 * 1024 * 1024 + 17)

    async def chunks() -> AsyncIterator[bytes]:  # chunked upload, no Content-Length
        for start in range(0, len(blob), 256 * 1024):
            yield blob[start : start + 256 * 1024]

    response = await client.post(
        f"{proxy.url}/echo/blob", content=chunks(), headers={"Content-Type": "application/octet-stream"}
    )
    assert response.status_code == 200
    assert hashlib.sha256(response.content).digest() == hashlib.sha256(blob).digest()
    download = await client.get(f"{proxy.url}/binary?size=2097152")
    assert len(download.content) == 2097152
    assert download.headers["content-type"] == "application/octet-stream"


async def test_sse_chunks_arrive_before_the_upstream_finishes(
    proxy: ProxyProcess, upstream: Any, client: httpx.AsyncClient
) -> None:
    state: UpstreamState = upstream.app[STATE]
    received: list[bytes] = []
    async with client.stream("GET", f"{proxy.url}/sse") as response:
        assert response.headers["content-type"] == "text/event-stream"
        async for chunk in response.aiter_raw():
            received.append(chunk)
            if len(received) == 1:
                # The upstream holds its final chunk until this point, so the first chunk reached
                # us through the proxy while the upstream was still mid-response.
                assert b"first" in chunk
                assert not state.sse_final_sent
                state.sse_release.set()
    text = b"".join(received)
    assert b"last" in text and text.endswith(b"data: [DONE]\n\n")


async def test_upstream_status_codes_and_errors_pass_through(
    proxy: ProxyProcess, client: httpx.AsyncClient
) -> None:
    for code in (400, 404, 429, 500, 503):
        response = await client.get(f"{proxy.url}/status/{code}")
        assert response.status_code == code
        assert response.json() == {"error": {"message": f"upstream says {code}"}}


async def test_healthz_reports_proxy_and_upstream(proxy: ProxyProcess, client: httpx.AsyncClient) -> None:
    health = await client.get(f"{proxy.url}/healthz")
    assert health.status_code == 200
    body = health.json()
    assert body["status"] == "ok"
    assert body["upstream"]["ok"] is True and body["upstream"]["status"] == 200
    assert body["jobs"] == {"accepting": True, "queued": 0, "running": 0}
    assert (await client.get(f"{proxy.url}/readyz")).status_code == 200


async def test_logs_are_json_and_carry_no_credential(proxy: ProxyProcess, client: httpx.AsyncClient) -> None:
    secret = "sk-never-log-this-4242"
    submitted = await client.post(
        f"{proxy.url}/v1/async/embeddings",
        json={"model": "openai/e", "input": "private text 9876"},
        headers={"Authorization": f"Bearer {secret}", "x-bf-vk": secret},
    )
    await wait_job(client, proxy.url + submitted.headers["location"], headers={"x-bf-vk": secret})
    await proxy.stop()
    logs = proxy.logs()
    events = [json.loads(line) for line in logs.splitlines() if line.strip()]
    names = {event["event"] for event in events}
    assert {"async_jobs.started", "job.started", "job.completed", "async_jobs.stopped"} <= names
    assert secret not in logs and "private text 9876" not in logs
