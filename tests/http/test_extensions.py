"""The opt-in extensions through a real uvicorn server (memory store, asgi provider): long-poll,
Prefer: wait on submit, idempotent submit, cancel and delete, raw results, list, and
Prefer: respond-async on a synchronous route. Every wait is on an event with a bounded deadline."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest

from tests.apps import SPEECH_BYTES
from tests.helpers import build_stack

CHAT = "chat/completions"
ALICE = {"Authorization": "Bearer alice-key"}
BOB = {"Authorization": "Bearer bob-key"}


@pytest.fixture
async def stack(serve: Any) -> Any:
    return await build_stack(serve, concurrency=1, max_wait_seconds=20)


async def parked(stack: Any, count: int) -> None:
    """Wait (bounded) until ``count`` waiters are parked in the memory store."""
    async with asyncio.timeout(10):
        while len(stack.middleware.store._waiters) < count:  # noqa: ASYNC110 - no event to await
            await asyncio.sleep(0.01)


def gated(content: str = "x") -> dict[str, Any]:
    return {"json": {"model": "test/gate", "messages": [{"role": "user", "content": content}]}}


async def test_long_poll_answers_when_the_job_ends(stack: Any, http: httpx.AsyncClient) -> None:
    submitted = await stack.submit(http, CHAT, **gated())
    poll_url = stack.url + submitted.headers["location"]
    await asyncio.wait_for(stack.app.state.gate.arrived.wait(), 10)
    by_query = asyncio.create_task(http.get(poll_url, params={"wait": "15"}))
    by_prefer = asyncio.create_task(http.get(poll_url, headers={"Prefer": "wait=15"}))
    plain = await http.get(poll_url)  # without the extension: at once, as the contract says
    assert plain.status_code == 202 and plain.json()["status"] == "processing"
    await parked(stack, 3)  # both polls and the runner's own watch of the running job
    assert not by_query.done() and not by_prefer.done()
    stack.app.state.gate.opened.set()
    for task in (by_query, by_prefer):
        answer = await asyncio.wait_for(task, 10)  # far below the 15 s asked: woken by the end
        assert answer.status_code == 200 and answer.json()["status"] == "completed"


async def test_long_poll_is_capped_and_validated(serve: Any, http: httpx.AsyncClient) -> None:
    stack = await build_stack(serve, max_wait_seconds=0.2)
    submitted = await stack.submit(http, CHAT, **gated())
    poll_url = stack.url + submitted.headers["location"]
    capped = await asyncio.wait_for(http.get(poll_url, params={"wait": "3600"}), 10)
    assert capped.status_code == 202 and capped.headers["retry-after"] == "1"
    bad = await http.get(poll_url, params={"wait": "soon"})
    assert bad.status_code == 400 and bad.json()["error"]["code"] == "invalid_wait"
    ignored = await http.get(poll_url, headers={"Prefer": "wait=soon"})  # RFC 7240: ignored
    assert ignored.status_code == 202
    stack.app.state.gate.opened.set()


async def test_prefer_wait_on_submit(stack: Any, http: httpx.AsyncClient) -> None:
    body = {"model": "test/ok", "input": "x"}
    done = await stack.submit(http, "embeddings", json=body, headers={"Prefer": "wait=15"})
    assert done.status_code == 200 and done.json()["status"] == "completed"
    assert done.json()["result"]["echo"] == body and done.headers["location"].endswith(done.json()["id"])
    slow = await stack.submit(http, CHAT, **gated(), headers={"Prefer": "wait=0.1"})
    assert slow.status_code == 202 and slow.json()["status"] in ("pending", "processing")
    stack.app.state.gate.opened.set()


async def test_a_long_poll_whose_client_leaves_gives_up_its_wait(stack: Any, http: httpx.AsyncClient) -> None:
    """The server reads the disconnect while the poll waits on the store: the wait is
    dropped (its waiter with it), the job runs on, and a later long-poll still answers."""
    submitted = await stack.submit(http, CHAT, **gated())
    poll_url = stack.url + submitted.headers["location"]
    await asyncio.wait_for(stack.app.state.gate.arrived.wait(), 10)
    async with httpx.AsyncClient(timeout=30) as leaving:
        poll = asyncio.create_task(leaving.get(poll_url, params={"wait": "15"}))
        await parked(stack, 2)  # the runner's watch of the running job, and the poll
        poll.cancel()  # the client closes its connection mid-request
        with pytest.raises(asyncio.CancelledError):
            await poll
    async with asyncio.timeout(10):  # bounded: the server drops the poll's waiter
        while len(stack.middleware.store._waiters) != 1:  # noqa: ASYNC110 - no event to await
            await asyncio.sleep(0.01)
    later = asyncio.create_task(http.get(poll_url, params={"wait": "15"}))
    await parked(stack, 2)
    stack.app.state.gate.opened.set()
    answer = await asyncio.wait_for(later, 10)
    assert answer.status_code == 200 and answer.json()["status"] == "completed"


async def test_idempotent_submit_during_and_after_the_job(stack: Any, http: httpx.AsyncClient) -> None:
    key = {"Idempotency-Key": "order-42", **ALICE}
    first = await stack.submit(http, CHAT, **gated("a"), headers=key)
    assert first.status_code == 202 and "idempotent-replayed" not in first.headers
    await asyncio.wait_for(stack.app.state.gate.arrived.wait(), 10)
    during = await stack.submit(http, CHAT, **gated("a"), headers=key)
    assert during.status_code == 202 and during.headers["idempotent-replayed"] == "true"
    assert during.json()["id"] == first.json()["id"] and during.json()["status"] == "processing"
    other_body = await stack.submit(http, CHAT, **gated("b"), headers=key)
    assert other_body.status_code == 422
    assert other_body.json()["error"]["code"] == "idempotency_key_reused"
    bobs = await stack.submit(http, CHAT, json={"model": "test/ok"}, headers={**key, **BOB})
    assert bobs.status_code == 202 and bobs.json()["id"] != first.json()["id"]  # keys are per owner
    stack.app.state.gate.opened.set()
    await stack.recorder.wait("finished", first.json()["id"])
    after = await stack.submit(http, CHAT, **gated("a"), headers=key)
    assert after.status_code == 200 and after.json()["id"] == first.json()["id"]
    assert after.json()["status"] == "completed"
    assert stack.app.state.gate.waiting == 1  # it ran once
    runs = [job.id for kind, job in stack.recorder.events if kind == "submitted"]
    assert runs.count(first.json()["id"]) == 1
    bad = await stack.submit(http, CHAT, json={"model": "m"}, headers={"Idempotency-Key": "\x7f"})
    assert bad.status_code == 400


async def test_cancel_pending_and_running_jobs_then_delete(stack: Any, http: httpx.AsyncClient) -> None:
    gate = stack.app.state.gate
    running = await stack.submit(http, CHAT, **gated(), headers=ALICE)
    await asyncio.wait_for(gate.arrived.wait(), 10)
    queued = await stack.submit(http, "embeddings", json={"model": "test/ok"}, headers=ALICE)
    queued_url = stack.url + queued.headers["location"]
    assert (await http.delete(queued_url, headers=BOB)).status_code == 404  # owner-checked
    cancelled = await http.delete(queued_url, headers=ALICE)
    assert cancelled.status_code == 200
    body = cancelled.json()
    assert body["status"] == "failed" and body["status_code"] == 499
    assert body["error"]["type"] == "cancelled" and body["error"]["error"]["code"] == "job_cancelled"
    assert body["error"]["error"]["message"] == "the job was cancelled by its owner"
    running_url = stack.url + running.headers["location"]
    stopped = await http.delete(running_url, headers=ALICE)
    assert stopped.status_code == 200 and stopped.json()["status"] == "failed"
    await asyncio.wait_for(gate.cancelled.wait(), 10)  # the in-process replay was really cancelled
    # the worker slot is free again: a new job runs on the single worker
    after = await stack.submit(http, "embeddings", json={"model": "test/ok"}, headers=ALICE)
    assert (await stack.finish(http, "embeddings", after, headers=ALICE)).json()["status"] == "completed"
    poll = await http.get(running_url, headers=ALICE)
    assert poll.status_code == 200 and poll.json()["error"]["type"] == "cancelled"
    removed = await http.delete(running_url, headers=ALICE)
    assert removed.status_code == 204 and removed.content == b""
    assert (await http.get(running_url, headers=ALICE)).status_code == 404
    assert (await http.delete(running_url, headers=ALICE)).status_code == 404
    assert stack.recorder.finished()[queued.json()["id"]].status_code == 499


async def test_cancelling_an_anonymous_job_does_not_name_an_owner(
    stack: Any, http: httpx.AsyncClient
) -> None:
    """A job submitted without a credential has no owner; the cancel message must not claim one."""
    gate = stack.app.state.gate
    running = await stack.submit(http, CHAT, **gated())
    await asyncio.wait_for(gate.arrived.wait(), 10)
    queued = await stack.submit(http, "embeddings", json={"model": "test/ok"})
    cancelled = await http.delete(stack.url + queued.headers["location"])
    assert cancelled.status_code == 200
    message = cancelled.json()["error"]["error"]["message"]
    assert "owner" not in message and "without a credential" in message
    assert (await http.delete(stack.url + running.headers["location"])).status_code == 200


@pytest.mark.parametrize("response_format", ["json", "text", "srt", "vtt"])
async def test_raw_transcription_results_are_byte_identical(
    stack: Any, http: httpx.AsyncClient, response_format: str
) -> None:
    form = {
        "files": {"file": ("a.wav", b"RIFF" + bytes(300))},
        "data": {"model": "m", "response_format": response_format},
    }
    direct = await http.post(f"{stack.url}/v1/audio/transcriptions", **form)
    submitted = await stack.submit(http, "audio/transcriptions", **form)
    await stack.finish(http, "audio/transcriptions", submitted)
    raw = await http.get(stack.url + submitted.headers["location"] + "/result")
    assert raw.status_code == direct.status_code == 200
    assert raw.headers["content-type"] == direct.headers["content-type"]
    assert raw.content == direct.content


async def test_raw_speech_error_and_pending_results(stack: Any, http: httpx.AsyncClient) -> None:
    speech = await stack.submit(http, "audio/speech", json={"model": "m", "input": "hi", "voice": "v"})
    await stack.finish(http, "audio/speech", speech)
    audio = await http.get(stack.url + speech.headers["location"] + "/result")
    assert audio.status_code == 200 and audio.content == SPEECH_BYTES
    assert audio.headers["content-type"] == "audio/mpeg"
    error = await stack.submit(http, CHAT, json={"model": "test/error"})
    direct = await http.post(f"{stack.url}/v1/chat/completions", json={"model": "test/error"})
    await stack.finish(http, CHAT, error)
    raw = await http.get(stack.url + error.headers["location"] + "/result")
    assert (raw.status_code, raw.content) == (400, direct.content)
    pending = await stack.submit(http, CHAT, **gated())
    not_yet = await http.get(stack.url + pending.headers["location"] + "/result")
    assert not_yet.status_code == 202 and not_yet.json()["status"] in ("pending", "processing")
    stack.app.state.gate.opened.set()
    waited = await http.get(stack.url + pending.headers["location"] + "/result", params={"wait": "15"})
    assert waited.status_code == 200 and waited.json()["path"] == "/v1/chat/completions"


async def test_list_own_jobs_paged_filtered_with_queue_position(stack: Any, http: httpx.AsyncClient) -> None:
    gate = stack.app.state.gate
    running = await stack.submit(http, CHAT, **gated(), headers=ALICE)
    await asyncio.wait_for(gate.arrived.wait(), 10)
    queued = [
        (await stack.submit(http, CHAT, json={"model": "test/ok"}, headers=ALICE)).json()["id"]
        for _ in range(3)
    ]
    await stack.submit(http, CHAT, json={"model": "test/ok"}, headers=BOB)
    await stack.submit(http, "embeddings", json={"model": "test/ok"}, headers=ALICE)
    listed: list[dict[str, Any]] = []
    params: dict[str, str] = {"limit": "2"}
    for _ in range(3):
        page = await http.get(f"{stack.url}/v1/async/{CHAT}", params=params, headers=ALICE)
        assert page.status_code == 200
        listed += page.json()["data"]
        if not page.json()["has_more"]:
            assert "next_cursor" not in page.json()
            break
        params["cursor"] = page.json()["next_cursor"]
    assert [job["id"] for job in listed] == [*reversed(queued), running.json()["id"]]
    assert [job.get("queue_position") for job in listed] == [3, 2, 1, None]
    only = await http.get(f"{stack.url}/v1/async/{CHAT}", params={"status": "processing"}, headers=ALICE)
    assert [job["id"] for job in only.json()["data"]] == [running.json()["id"]]
    assert (await http.get(f"{stack.url}/v1/async/{CHAT}")).status_code == 403  # no credential
    bad = await http.get(f"{stack.url}/v1/async/{CHAT}", params={"status": "done"}, headers=ALICE)
    assert bad.status_code == 400
    bad_cursor = await http.get(f"{stack.url}/v1/async/{CHAT}", params={"cursor": "x"}, headers=ALICE)
    assert bad_cursor.status_code == 400
    gate.opened.set()


async def test_prefer_respond_async_on_the_synchronous_route(stack: Any, http: httpx.AsyncClient) -> None:
    form = {"files": {"file": ("a.wav", b"RIFF" + bytes(100))}, "data": {"model": "m"}}
    sync = await http.post(f"{stack.url}/v1/audio/transcriptions", **form)
    assert sync.status_code == 200 and sync.json()["text"] == "heard 104 bytes"
    job = await http.post(f"{stack.url}/v1/audio/transcriptions", **form, headers={"Prefer": "respond-async"})
    assert job.status_code == 202 and job.headers["preference-applied"] == "respond-async"
    assert job.json()["status"] == "pending"
    assert job.headers["location"] == f"/v1/async/audio/transcriptions/{job.json()['id']}"
    done = await stack.finish(http, "audio/transcriptions", job)
    assert done.json()["result"] == sync.json()
    other = await http.get(f"{stack.url}/plain", headers={"Prefer": "respond-async"})
    assert other.text == "untouched"  # only a synchronous job route's POST turns async
