"""Two real uvicorn server processes share one real Redis: a job submitted to one is polled on the
other; a process killed with SIGKILL mid-job leaves no job ``processing``; a Redis restart gives
503 while it is down and the service recovers by itself."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis
from redis_server import RedisServer, wait_until

SUBMIT = "/v1/async/chat/completions"
TESTS = Path(__file__).parent
#: lease_seconds and sweep interval of the redis_worker_app processes, decided here only (they get
#: them through the environment). A worker renews its leases every LEASE / 3, so a process that
#: stalls for more than about 2/3 of LEASE while it runs a job (a loaded CI machine) has that job
#: failed by the other one as worker_lost: LEASE is kept well above such stalls. Set
#: BIFROST_TEST_LEASE to raise it on a slower machine; every lease-bound wait below follows.
LEASE = float(os.environ.get("BIFROST_TEST_LEASE", "4"))
SWEEP = float(os.environ.get("BIFROST_TEST_SWEEP", "3"))
#: Seconds allowed on top of what the lease and the sweep need, for a loaded machine.
SLACK = 10.0


class ServerProcess:
    """``python -m uvicorn redis_worker_app:app`` on its own port, configured by environment."""

    def __init__(self, name: str, redis_url: str, gates: Path, logs: Path) -> None:
        env = {**os.environ, "BIFROST_ASYNC_REDIS_URL": redis_url, "BIFROST_TEST_GATES": str(gates)}
        env |= {"BIFROST_TEST_LEASE": str(LEASE), "BIFROST_TEST_SWEEP": str(SWEEP)}
        # The listening socket is bound here and handed over (--fd), so no other process can take
        # the port between picking it and the server binding it.
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as listener:
            listener.bind(("127.0.0.1", 0))
            # uvicorn wraps an --fd socket as AF_UNIX, so asyncio never sets TCP_NODELAY on the
            # connections (Nagle then delays each answer by ~40 ms); Linux copies it from here.
            listener.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self.port = int(listener.getsockname()[1])
            self.url = f"http://127.0.0.1:{self.port}"
            command = [sys.executable, "-m", "uvicorn", "redis_worker_app:app", "--app-dir", str(TESTS)]
            command += ["--fd", str(listener.fileno()), "--log-level", "warning"]
            # Longer than httpx's 5 s pool expiry, so a reused connection is never closed under a request.
            command += ["--timeout-keep-alive", "30"]
            self.log = logs / f"{name}.log"
            with self.log.open("wb") as out:
                self.process = subprocess.Popen(
                    command, env=env, stdout=out, stderr=subprocess.STDOUT, pass_fds=(listener.fileno(),)
                )

    def ready(self) -> bool:
        if self.process.poll() is not None:
            raise AssertionError(f"server exited early:\n{self.log.read_text()}")
        try:
            return httpx.get(f"{self.url}/healthz", timeout=1).status_code == 200
        except httpx.TransportError:
            return False

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


@contextlib.contextmanager
def server_pair(redis_url: str, workdir: Path) -> Iterator[tuple[ServerProcess, ServerProcess]]:
    """Servers A and B on ``redis_url``, their gates in ``workdir / "gates"``, their logs in
    ``workdir``; both answer /healthz before this yields, and both are stopped after it."""
    gates = workdir / "gates"
    gates.mkdir()
    pair = (
        ServerProcess("a", redis_url, gates, workdir),
        ServerProcess("b", redis_url, gates, workdir),
    )
    try:
        for server in pair:
            wait_until(server.ready, 30, f"server on port {server.port}")
        yield pair
    finally:
        for server in pair:
            server.stop()


@pytest.fixture
def servers(own_redis: RedisServer, tmp_path: Path) -> Iterator[tuple[ServerProcess, ServerProcess]]:
    own_redis.start()
    with server_pair(own_redis.url, tmp_path) as pair:
        yield pair


def submit(server: ServerProcess, token: str) -> str:
    body = {"model": "openai/gpt-4o-mini", "messages": [{"role": "user", "content": token}]}
    response = httpx.post(f"{server.url}{SUBMIT}", json=body, timeout=10)
    assert response.status_code == 202, response.text
    return str(response.json()["id"])


def poll(server: ServerProcess, job_id: str) -> httpx.Response:
    return httpx.get(f"{server.url}{SUBMIT}/{job_id}", timeout=10)


def final(server: ServerProcess, job_id: str, deadline: float = 15.0) -> dict[str, Any]:
    """Poll ``server`` until the job has ended; its body."""
    answers: list[httpx.Response] = []

    def ended() -> bool:
        answers.append(poll(server, job_id))
        assert answers[-1].status_code in (200, 202), answers[-1].text
        return answers[-1].status_code == 200

    wait_until(ended, deadline, f"job {job_id} to end")
    body: dict[str, Any] = answers[-1].json()
    return body


def stored_status(redis_url: str, job_id: str) -> str | None:
    client = redis.Redis.from_url(redis_url)
    try:
        raw = client.hget(f"bifrost-async:job:{job_id}", "record")
    finally:
        client.close()
    return None if raw is None else str(json.loads(raw)["status"])  # type: ignore[arg-type]


@pytest.mark.slow
def test_two_servers_share_jobs_survive_a_killed_worker_and_a_redis_restart(
    servers: tuple[ServerProcess, ServerProcess], own_redis: RedisServer, tmp_path: Path
) -> None:
    a, b = servers
    gates = tmp_path / "gates"

    # 1. Submitted to A, polled on B: B sees it running, then sees A's result.
    first = submit(a, "t1")
    wait_until((gates / "started-t1").exists, 10, "A to start t1")
    assert (gates / "started-t1").read_text() == str(a.process.pid)
    assert poll(b, first).json()["status"] == "processing"
    (gates / "release-t1").touch()
    done = final(b, first)
    assert done["status"] == "completed" and done["result"] == {"token": "t1", "pid": a.process.pid}

    # 2. A is killed while it runs two jobs. B is polled for one; the other nobody polls (the sweep).
    polled, unpolled = submit(a, "t2"), submit(a, "t3")
    for token in ("t2", "t3"):
        wait_until((gates / f"started-{token}").exists, 10, f"A to start {token}")
    a.process.send_signal(signal.SIGKILL)
    a.process.wait()
    killed = time.monotonic()
    lost = final(b, polled, deadline=LEASE + SLACK)  # its lease runs out within LEASE of the kill
    polled_after = time.monotonic() - killed
    assert lost["status"] == "failed" and lost["status_code"] == 500
    assert lost["error"]["error"]["code"] == "worker_lost"
    assert "worker running this job was lost" in lost["error"]["error"]["message"]
    wait_until(lambda: stored_status(own_redis.url, unpolled) == "failed", LEASE + SWEEP + SLACK, "the sweep")
    swept_after = time.monotonic() - killed
    assert final(b, unpolled)["error"]["error"]["code"] == "worker_lost"
    print(f"\norphan failed {polled_after:.2f} s after SIGKILL on poll, {swept_after:.2f} s by the sweep")

    # 3. Redis restarts: B answers 503 with Retry-After while it is down and recovers by itself.
    own_redis.stop()
    down = httpx.post(f"{b.url}{SUBMIT}", json={"model": "m", "messages": [{"content": "x"}]}, timeout=10)
    assert down.status_code == 503 and down.headers["retry-after"] == "1", down.text
    assert poll(b, first).status_code == 503
    own_redis.start()
    (gates / "release-t4").touch()
    after = submit(b, "t4")
    assert final(b, after)["result"] == {"token": "t4", "pid": b.process.pid}
