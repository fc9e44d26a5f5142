"""Cheap polls (bifrost_async.http.poll_answers) through a real uvicorn server: an answer kept
from an earlier poll is never served once the job changed, expired, or to another owner; an
early poll is held (``poll_pacing``) only until its job ends or is cancelled.

Every wait is on an event or a hook with a bounded deadline; nothing here is timed."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import httpx
import pytest

from bifrost_async.core.jobs import Job, JobStatus
from bifrost_async.http.poll_answers import PollAnswers, send_answer
from tests.helpers import build_stack

CHAT = "chat/completions"
ALICE = {"Authorization": "Bearer alice-key"}
BOB = {"Authorization": "Bearer bob-key"}


def gated() -> dict[str, Any]:
    return {"json": {"model": "test/gate", "messages": [{"role": "user", "content": "x"}]}, "headers": ALICE}


@pytest.fixture
async def stack(serve: Any) -> Any:
    """Polls answered at once (no pacing), so a poll of a running job shows it running."""
    return await build_stack(serve, concurrency=1, poll_pacing=0)


@pytest.fixture
async def paced(serve: Any) -> Any:
    """Early polls held far longer than any test waits: only the job's end answers them."""
    return await build_stack(serve, concurrency=1, poll_pacing=300)


async def held(stack: Any, http: httpx.AsyncClient, url: str) -> asyncio.Task[httpx.Response]:
    """A poll of ``url`` that the server holds: parked on the job in the memory store."""
    parked = len(stack.middleware.store._waiters)
    poll = asyncio.create_task(http.get(url, headers=ALICE))
    async with asyncio.timeout(10):
        while len(stack.middleware.store._waiters) <= parked:  # noqa: ASYNC110 - no event to await
            await asyncio.sleep(0.01)
    assert not poll.done()
    return poll


async def running(stack: Any, http: httpx.AsyncClient) -> str:
    """Submit a job that holds in the app until its gate opens; its poll URL once it runs."""
    submitted = await stack.submit(http, CHAT, **gated())
    assert submitted.status_code == 202
    await asyncio.wait_for(stack.app.state.gate.arrived.wait(), 10)
    return str(stack.url + submitted.headers["location"])


async def test_a_poll_after_the_job_changed_sees_the_change(stack: Any, http: httpx.AsyncClient) -> None:
    url = await running(stack, http)
    first, second = await http.get(url, headers=ALICE), await http.get(url, headers=ALICE)
    assert first.status_code == second.status_code == 202
    assert first.content == second.content and first.json()["status"] == "processing"
    assert len(stack.middleware.endpoints.answers) == 1  # the second came from the kept answer
    stack.app.state.gate.opened.set()
    job_id = first.json()["id"]
    await stack.recorder.wait("finished", job_id)
    done = await http.get(url, headers=ALICE)
    assert done.status_code == 200 and done.json()["status"] == "completed"
    assert "retry-after" not in done.headers and done.json()["result"]
    again = await http.get(url, headers=ALICE)
    assert again.status_code == 200 and again.content == done.content


async def test_another_owner_never_gets_the_kept_answer(stack: Any, http: httpx.AsyncClient) -> None:
    url = await running(stack, http)
    assert (await http.get(url, headers=ALICE)).status_code == 202  # kept now
    for other in (BOB, {}):
        refused = await http.get(url, headers=other)
        assert refused.status_code == 404 and refused.json()["error"]["message"] == "job not found or expired"
    stack.app.state.gate.opened.set()
    await stack.recorder.wait("finished", url.rsplit("/", 1)[1])
    assert (await http.get(url, headers=ALICE)).status_code == 200
    assert (await http.get(url, headers=BOB)).status_code == 404


async def test_an_expired_job_is_404_not_its_kept_200(serve: Any, http: httpx.AsyncClient) -> None:
    now = [time.time()]
    stack = await build_stack(serve, clock=lambda: now[0])
    submitted = await stack.submit(
        http,
        "embeddings",
        json={"model": "test/ok", "input": "x"},
        headers={"x-bf-async-job-result-ttl": "60"},
    )
    done = await stack.finish(http, "embeddings", submitted)
    assert done.status_code == 200 and done.json()["status"] == "completed"
    url = stack.url + submitted.headers["location"]
    assert (await http.get(url)).content == done.content  # kept
    now[0] += 61  # past expires_at: the store still holds it until a sweep, the answer is kept
    gone = await http.get(url)
    assert gone.status_code == 404 and gone.json()["error"]["message"] == "job not found or expired"


async def test_a_cancel_is_visible_at_once(stack: Any, http: httpx.AsyncClient) -> None:
    url = await running(stack, http)
    assert (await http.get(url, headers=ALICE)).json()["status"] == "processing"  # kept
    cancelled = await http.delete(url, headers=ALICE)
    assert cancelled.status_code == 200
    polled = await http.get(url, headers=ALICE)
    assert polled.status_code == 200 and polled.json()["status"] == "failed"
    assert polled.json()["error"]["type"] == "cancelled"
    assert (await http.delete(url, headers=ALICE)).status_code == 204  # deleted: forgotten too
    assert (await http.get(url, headers=ALICE)).status_code == 404
    assert url.rsplit("/", 1)[1] not in stack.middleware.endpoints.answers._answers


async def test_an_early_poll_is_held_until_the_job_ends(paced: Any, http: httpx.AsyncClient) -> None:
    url = await running(paced, http)  # its submit was answered just now: the next poll is early
    poll = await held(paced, http, url)
    paced.app.state.gate.opened.set()
    answer = await asyncio.wait_for(poll, 10)  # far below the 300 s of pacing: woken by the end
    assert answer.status_code == 200 and answer.json()["status"] == "completed"
    again = await asyncio.wait_for(http.get(url, headers=ALICE), 10)  # early, but an ended job
    assert again.status_code == 200 and again.content == answer.content  # is never held
    assert (await http.get(url, headers=BOB)).status_code == 404  # the owner check still runs


async def test_a_held_poll_sees_a_cancel_at_once(paced: Any, http: httpx.AsyncClient) -> None:
    url = await running(paced, http)
    poll = await held(paced, http, url)
    assert (await http.delete(url, headers=ALICE)).status_code == 200
    answer = await asyncio.wait_for(poll, 10)
    assert answer.status_code == 200 and answer.json()["error"]["type"] == "cancelled"


def job(number: int, status: JobStatus = JobStatus.PENDING, result: Any = None) -> Job:
    done = status.terminal
    return Job(
        id=f"00000000-0000-4000-8000-{number:012d}",
        request_id="r",
        request_type="embedding",
        status=status,
        created_at=1_700_000_000.0,
        ttl=60,
        completed_at=1_700_000_001.0 if done else None,
        expires_at=1_700_000_061.0 if done else None,
        status_code=200 if done else None,
        result=result,
    )


def test_the_table_is_bounded_by_entries_and_bytes() -> None:
    answers = PollAnswers(max_entries=3, max_bytes=10_000, max_answer=2_000)
    for number in range(5):
        answers.answer(job(number), b"1", 0.0)
    assert len(answers) == 3 and answers.bytes_held == sum(len(a.body) for a in answers._answers.values())
    big = job(9, JobStatus.COMPLETED, "x" * 3_000)
    code, _, body = answers.answer(big, b"1", 0.0)
    assert code == 200 and len(body) > 3_000  # answered, but too big to keep
    assert answers._answers[big.id].body == b""  # only when it was answered (for pacing)
    fits = [job(20 + n, JobStatus.COMPLETED, "y" * 1_500) for n in range(8)]
    for each in fits:
        answers.answer(each, b"1", 0.0)
    assert answers.bytes_held <= 10_000 and len(answers) <= 3


def test_a_status_change_is_a_fresh_answer() -> None:
    answers = PollAnswers()
    pending = job(1)
    code, headers, body = answers.answer(pending, b"7", 0.0)
    assert code == 202 and (b"retry-after", b"7") in headers and b'"pending"' in body
    processing = pending.copy()
    processing.status = JobStatus.PROCESSING
    code, _, body = answers.answer(processing, b"7", 1.0)
    assert code == 202 and b'"processing"' in body
    assert answers.answer(processing, b"7", 2.0)[2] is body  # unchanged: the kept bytes


def test_a_changed_hint_keeps_the_kept_bytes() -> None:
    """Retry-After varies from poll to poll; the body is still encoded once per status, and
    each answer carries exactly one Retry-After, this poll's."""
    answers = PollAnswers()
    pending = job(1)
    _, first_headers, body = answers.answer(pending, b"3", 0.0)
    _, headers, again = answers.answer(pending, b"12", 1.0)
    assert again is body
    assert [v for k, v in first_headers if k == b"retry-after"] == [b"3"]
    assert [v for k, v in headers if k == b"retry-after"] == [b"12"]
    done = job(1, JobStatus.COMPLETED, "r")
    code, headers, _ = answers.answer(done, b"5", 2.0)
    assert code == 200 and all(k != b"retry-after" for k, _ in headers)


async def test_sent_headers_are_a_copy() -> None:
    """A middleware around ours may append to the message's header list in place."""
    answers = PollAnswers()
    sent: list[dict[str, Any]] = []

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)
        if message["type"] == "http.response.start":
            message["headers"].append((b"x-added", b"1"))

    for _ in range(2):
        await send_answer(send, *answers.answer(job(1), b"1", 0.0))
    assert [h for h, _ in sent[2]["headers"]].count(b"x-added") == 1
