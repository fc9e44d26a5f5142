"""``Idempotency-Key`` compares what a submit means (issue 12 item 1): the same upload from two
clients that each pick their own multipart boundary, the same JSON in another key order, the
Python client's own retries and ``bifrost-async submit --idempotency-key``."""

from __future__ import annotations

import asyncio
import json
import sys
from typing import Any

import httpx

from bifrost_async.client import AsyncJobsClient
from tests.apps import SPEECH_BYTES
from tests.helpers import build_stack
from tests.proxy_support import CLIP


async def test_the_same_upload_from_two_clients_is_one_job(serve: Any) -> None:
    stack = await build_stack(serve)
    form = {"model": "whisper-1", "response_format": "json"}
    answers = []
    for _ in range(2):  # a new client, hence a new random boundary, each time
        async with httpx.AsyncClient(timeout=30) as client:
            answers.append(
                await stack.submit(
                    client,
                    "audio/transcriptions",
                    data=form,
                    files={"file": ("clip.wav", SPEECH_BYTES, "audio/wav")},
                    headers={"idempotency-key": "upload-1"},
                )
            )
    boundaries = {a.request.headers["content-type"] for a in answers}
    assert len(boundaries) == 2  # the framing differed...
    assert answers[0].status_code == 202 and answers[1].status_code in (200, 202), answers[1].text
    assert answers[0].json()["id"] == answers[1].json()["id"]  # ...the request did not
    assert answers[1].headers["idempotent-replayed"] == "true"
    async with httpx.AsyncClient(timeout=30) as client:
        other_file = await stack.submit(
            client,
            "audio/transcriptions",
            data=form,
            files={"file": ("clip.wav", SPEECH_BYTES[::-1], "audio/wav")},
            headers={"idempotency-key": "upload-1"},
        )
    assert other_file.status_code == 422
    assert other_file.json()["error"]["code"] == "idempotency_key_reused"


async def test_the_same_json_in_another_layout_is_one_job(serve: Any, http: httpx.AsyncClient) -> None:
    stack = await build_stack(serve)
    key = {"idempotency-key": "json-1", "content-type": "application/json"}
    first = await stack.submit(http, "embeddings", content=b'{"model": "m", "input": ["a", 1]}', headers=key)
    again = await stack.submit(http, "embeddings", content=b'{"input":["a",1.0],\n"model":"m"}', headers=key)
    assert again.status_code in (200, 202) and again.json()["id"] == first.json()["id"]
    moved = await stack.submit(http, "embeddings", content=b'{"model": "m", "input": [1, "a"]}', headers=key)
    assert moved.status_code == 422  # array order is meaning


async def test_client_sends_a_key_and_its_retries_reuse_it(serve: Any) -> None:
    stack = await build_stack(serve, concurrency=1, queue_size=1, owner_queue_size=0)
    seen: list[str | None] = []
    answered = asyncio.Event()

    async def record(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http" and scope["method"] == "POST":
            seen.append(dict(scope["headers"]).get(b"idempotency-key", b"").decode() or None)
        await stack.middleware(scope, receive, send)
        if scope["type"] == "http" and scope["method"] == "POST":
            answered.set()

    server = await serve(record)
    async with AsyncJobsClient(server.url) as client:
        given = await client.submit("embedding", json={"model": "m"}, idempotency_key="mine")
        again = await client.submit("embedding", json={"model": "m"}, idempotency_key="mine")
        assert again.id == given.id and seen == ["mine", "mine"]
        await client.submit("embedding", json={"model": "test/gate", "input": "x"})
        await stack.app.state.gate.arrived.wait()
        await client.submit("embedding", json={"model": "m", "input": "queued"})  # the queue is full
        seen.clear()
        answered.clear()
        retrying = asyncio.create_task(client.submit("embedding", json={"model": "m"}, retries=5))
        await answered.wait()  # the first attempt was refused 429; open the gate so a retry gets in
        stack.app.state.gate.opened.set()
        job = await retrying
    assert job.status in ("pending", "processing", "completed")
    assert len(seen) >= 2 and seen[0] is not None and len(set(seen)) == 1  # one key, every try


async def test_cli_submit_sends_the_idempotency_key(serve: Any) -> None:
    stack = await build_stack(serve)
    ids = []
    for _ in range(2):
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "bifrost_async",
            "submit",
            str(CLIP),
            "--type",
            "transcription",
            "--url",
            stack.url,
            "--model",
            "whisper-1",
            "--idempotency-key",
            "cli-1",
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        out, err = await asyncio.wait_for(process.communicate(), 60)
        assert process.returncode == 0, err.decode()
        ids.append(out)
    assert json.loads(ids[0])["id"] == json.loads(ids[1])["id"]
