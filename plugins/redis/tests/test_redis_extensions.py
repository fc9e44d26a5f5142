"""The extensions across two real uvicorn processes sharing one real Redis: a long-poll on B is
woken by a job finishing on A, an idempotent retry on B during and after A's job returns A's
job, and a DELETE on B cancels the request running on A. Latencies are printed, not asserted."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from redis_server import RedisServer, wait_until
from test_redis_two_processes import SUBMIT, ServerProcess, server_pair, submit

Pair = tuple[ServerProcess, ServerProcess]


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The pair's gates (``workdir / "gates"``) and logs."""
    return tmp_path_factory.mktemp("extensions")


@pytest.fixture(scope="module")
def servers(workdir: Path) -> Iterator[Pair]:
    """One pair of server processes and their Redis for the whole module: starting them is most
    of each test's time. The tests stay apart: each gates its own token (``lp``, ``idem``,
    ``stop``), waits for its job to end, and none stops a server or Redis."""
    redis = RedisServer(workdir / "redis")
    redis.start()
    try:
        with server_pair(redis.url, workdir) as pair:
            yield pair
    finally:
        redis.stop()


KEYED = {"Idempotency-Key": "pay-7", "Authorization": "Bearer carol"}


def chat(token: str) -> dict[str, object]:
    return {"model": "openai/gpt-4o-mini", "messages": [{"role": "user", "content": token}]}


def parked_reads(server: ServerProcess, job_id: str) -> int:
    """Reads of the job that ``server`` finished with a waiter registered (redis_worker_app)."""
    return int(httpx.get(f"{server.url}/probe/parked/{job_id}", timeout=10).json())


def test_long_poll_on_b_wakes_when_the_job_ends_on_a(servers: Pair, workdir: Path) -> None:
    a, b = servers
    gates = workdir / "gates"
    job_id = submit(a, "lp")
    wait_until((gates / "started-lp").exists, 10, "A to start the job")
    short = httpx.get(f"{b.url}{SUBMIT}/{job_id}", params={"wait": "0.2"}, timeout=10)
    assert short.status_code == 202 and short.json()["status"] == "processing"  # held, then timed out
    with httpx.Client(timeout=30) as client:
        answers: list[tuple[httpx.Response, float]] = []

        def long_poll() -> None:
            response = client.get(f"{b.url}{SUBMIT}/{job_id}", params={"wait": "25"})
            answers.append((response, time.monotonic()))

        # Release only once B's long-poll is parked: it has registered its waiter and read the
        # job (still gated, so not ended) after that; from then on only A's notification ends it.
        before = parked_reads(b, job_id)
        poller = threading.Thread(target=long_poll)
        poller.start()
        wait_until(lambda: parked_reads(b, job_id) > before, 10, "the long-poll to park on B")
        assert not answers, "the long-poll answered before the job ended"
        released = time.monotonic()
        (gates / "release-lp").touch()
        poller.join(20)  # far below the 25 s asked: only the notification from A ends it in time
    assert answers, "the long-poll did not answer"
    response, answered = answers[0]
    assert response.status_code == 200 and response.json()["status"] == "completed"
    assert response.json()["result"]["pid"] == a.process.pid
    print(f"\nlong-poll on B answered {answered - released:.3f} s after A's job was released")


def test_idempotent_retry_on_b_during_and_after_the_job_on_a(servers: Pair, workdir: Path) -> None:
    a, b = servers
    gates = workdir / "gates"
    first = httpx.post(f"{a.url}{SUBMIT}", json=chat("idem"), headers=KEYED, timeout=10)
    assert first.status_code == 202
    wait_until((gates / "started-idem").exists, 10, "A to start the job")
    during = httpx.post(f"{b.url}{SUBMIT}", json=chat("idem"), headers=KEYED, timeout=10)
    assert during.status_code == 202 and during.headers["idempotent-replayed"] == "true"
    assert during.json()["id"] == first.json()["id"]
    other = httpx.post(f"{b.url}{SUBMIT}", json=chat("other"), headers=KEYED, timeout=10)
    assert other.status_code == 422
    (gates / "release-idem").touch()
    done = httpx.get(
        f"{b.url}{SUBMIT}/{first.json()['id']}", params={"wait": "15"}, headers=KEYED, timeout=30
    )
    assert done.status_code == 200
    after = httpx.post(f"{b.url}{SUBMIT}", json=chat("idem"), headers=KEYED, timeout=10)
    assert after.status_code == 200 and after.json()["id"] == first.json()["id"]
    assert after.json()["result"] == {"token": "idem", "pid": a.process.pid}  # ran once, on A


def test_cancel_on_b_stops_the_request_running_on_a(servers: Pair, workdir: Path) -> None:
    a, b = servers
    gates = workdir / "gates"
    job_id = submit(a, "stop")
    wait_until((gates / "started-stop").exists, 10, "A to start the job")
    asked = time.monotonic()
    cancelled = httpx.delete(f"{b.url}{SUBMIT}/{job_id}", timeout=10)
    assert cancelled.status_code == 200, cancelled.text
    assert cancelled.json()["status_code"] == 499 and cancelled.json()["error"]["type"] == "cancelled"
    wait_until((gates / "cancelled-stop").exists, 10, "A to cancel the running request")
    stopped = time.monotonic() - asked
    assert (gates / "cancelled-stop").read_text() == str(a.process.pid)
    polled = httpx.get(f"{a.url}{SUBMIT}/{job_id}", timeout=10).json()
    assert polled["status"] == "failed" and polled["error"]["error"]["code"] == "job_cancelled"
    assert httpx.delete(f"{a.url}{SUBMIT}/{job_id}", timeout=10).status_code == 204
    assert httpx.get(f"{b.url}{SUBMIT}/{job_id}", timeout=10).status_code == 404
    print(f"\ncancel on B stopped the request on A within {stopped:.3f} s (DELETE to CancelledError)")
