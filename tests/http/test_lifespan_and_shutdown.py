"""Lifespan, shutdown with jobs in flight, route configuration, through a real server."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest

from bifrost_async import AsyncJobsMiddleware, RouteSpec
from tests.helpers import Recorder, build_stack

WAV = ("clip.wav", b"RIFF0000", "audio/wav")


async def test_shutdown_fails_unfinished_jobs_and_finishes_quick_ones(
    serve: Any, http: httpx.AsyncClient
) -> None:
    stack = await build_stack(serve, concurrency=1, shutdown_grace=0.5)
    gate = stack.app.state.gate
    stuck = await stack.submit(http, "embeddings", json={"model": "test/hang", "input": "x"})
    await stack.recorder.wait("started", stuck.json()["id"])
    queued = await stack.submit(http, "embeddings", json={"model": "test/ok", "input": "x"})
    assert gate.waiting == 0
    await stack.server.stop()
    finished = stack.recorder.finished()
    hung = finished[stuck.json()["id"]]
    assert hung.status.value == "failed" and hung.status_code == 500
    assert hung.error is not None
    assert hung.error["error"]["message"] == "the server shut down before the job finished"
    waiting = finished[queued.json()["id"]]
    assert waiting.status.value == "failed" and waiting.status_code == 500
    assert waiting.error is not None
    assert waiting.error["error"]["message"] == "the server shut down before the job started"
    assert [kind for kind, _ in stack.recorder.events].count("finished") == 2


async def test_shutdown_lets_jobs_finish_within_grace(serve: Any, http: httpx.AsyncClient) -> None:
    stack = await build_stack(serve, concurrency=1, shutdown_grace=30)
    gate = stack.app.state.gate
    first = await stack.submit(http, "embeddings", json={"model": "test/gate", "input": "x"})
    second = await stack.submit(http, "embeddings", json={"model": "test/ok", "input": "x"})
    await gate.arrived.wait()
    stopping = asyncio.create_task(stack.server.stop())
    await asyncio.sleep(0)  # let shutdown begin while the job is held
    gate.opened.set()
    await asyncio.wait_for(stopping, 20)
    finished = stack.recorder.finished()
    assert finished[first.json()["id"]].status.value == "completed"
    assert finished[second.json()["id"]].status.value == "completed"


async def test_app_without_lifespan_support(serve: Any, http: httpx.AsyncClient) -> None:
    async def bare_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        assert scope["type"] == "http", "this app knows only http"
        await receive()
        await send(
            {"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]}
        )
        await send({"type": "http.response.body", "body": b"bare " + scope["path"].encode()})

    stack = await build_stack(serve, app=bare_app)
    assert stack.middleware.service is not None  # started by the server's lifespan
    submitted = await stack.submit(http, "embeddings", json={"model": "m", "input": "x"})
    job = (await stack.finish(http, "embeddings", submitted)).json()
    assert job["result"] == {"text": "bare /v1/embeddings"}
    await stack.server.stop()
    assert stack.middleware.runner is not None and not stack.middleware.runner.accepting


async def test_works_without_server_lifespan(serve: Any, http: httpx.AsyncClient) -> None:
    stack = await build_stack(serve)
    other = await serve(AsyncJobsMiddleware(stack.app), lifespan="off")
    submitted = await http.post(f"{other.url}/v1/async/embeddings", json={"model": "m", "input": "x"})
    assert submitted.status_code == 202
    url = f"{other.url}/v1/async/embeddings/{submitted.json()['id']}"
    polled = await http.get(url, params={"wait": 20}, timeout=30)  # a long-poll: answered when it ends
    assert polled.status_code == 200 and polled.json()["status"] == "completed"


async def test_route_override_and_extra_type(serve: Any, http: httpx.AsyncClient) -> None:
    diarize = RouteSpec(
        "diarization",
        "audio/diarize",
        "/v1/audio/diarize",
        body="multipart",
        noun="diarizations",
        stream_field="stream",
        file_fields=("file",),
    )
    stack = await build_stack(
        serve, route_overrides={"transcription": "/api/transcribe"}, extra_routes=(diarize,)
    )
    transcription = await stack.submit(http, "audio/transcriptions", data={"model": "m"}, files={"file": WAV})
    assert (await stack.finish(http, "audio/transcriptions", transcription)).json()["result"]["path"] == (
        "/api/transcribe"
    )
    diarized = await stack.submit(http, "audio/diarize", data={"model": "m"}, files={"file": WAV})
    job = (await stack.finish(http, "audio/diarize", diarized)).json()
    assert job["result"]["path"] == "/v1/audio/diarize"
    stored = await stack.middleware.store.get(job["id"])
    assert stored.request_type == "diarization"
    refused = await stack.submit(
        http, "audio/diarize", data={"model": "m", "stream": "true"}, files={"file": WAV}
    )
    assert refused.json()["error"]["message"] == "stream is not supported for async diarizations"


async def test_custom_prefix(serve: Any, http: httpx.AsyncClient) -> None:
    stack = await build_stack(serve, prefix="/jobs")
    submitted = await http.post(f"{stack.url}/jobs/embeddings", json={"model": "m", "input": "x"})
    assert submitted.headers["location"].startswith("/jobs/embeddings/")
    await stack.recorder.wait("finished", submitted.json()["id"])
    assert (await http.get(f"{stack.url}{submitted.headers['location']}")).status_code == 200
    assert (await http.post(f"{stack.url}/v1/async/embeddings", json={})).status_code == 404


async def test_starlette_add_middleware(serve: Any, http: httpx.AsyncClient) -> None:
    from tests.apps import make_app

    app = make_app()
    recorder = Recorder()
    app.add_middleware(AsyncJobsMiddleware, plugins=[recorder], concurrency=2)
    server = await serve(app)
    submitted = await http.post(f"{server.url}/v1/async/embeddings", json={"model": "m", "input": "x"})
    await recorder.wait("finished", submitted.json()["id"])
    polled = await http.get(f"{server.url}/v1/async/embeddings/{submitted.json()['id']}")
    assert polled.json()["result"]["lifespan_state"] == "yes"


SERVER_SCRIPT = """
import sys
import structlog
structlog.configure(processors=[structlog.contextvars.merge_contextvars,
    structlog.processors.KeyValueRenderer(key_order=["event"])])
from tests.apps import make_app
from bifrost_async import AsyncJobsMiddleware
import socket
import uvicorn
app = AsyncJobsMiddleware(make_app(), shutdown_grace=float(sys.argv[2]))
sock = socket.socket(fileno=int(sys.argv[1]))  # bound by the test: no port race
config = uvicorn.Config(app, log_level="info", timeout_keep_alive=30)
uvicorn.Server(config).run(sockets=[sock])
"""


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
async def test_sigterm_with_job_in_flight(tmp_path: Path, http: httpx.AsyncClient) -> None:
    """A real process gets SIGTERM with a job running: the job ends failed, not processing."""
    import socket

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(64)  # connections wait in the backlog until the child serves them
    port = sock.getsockname()[1]
    script = tmp_path / "server.py"
    script.write_text(SERVER_SCRIPT)
    root = Path(__file__).resolve().parents[2]
    env = {**os.environ, "PYTHONPATH": str(root)}
    proc = subprocess.Popen(
        [sys.executable, str(script), str(sock.fileno()), "0.3"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        pass_fds=[sock.fileno()],
    )
    sock.close()  # the child holds its own copy
    try:
        url = f"http://127.0.0.1:{port}"
        async with asyncio.timeout(60):  # only a bound on a hang: the backlog holds the request
            assert (await http.get(f"{url}/plain", timeout=60)).status_code == 200
            submitted = await http.post(
                f"{url}/v1/async/embeddings", json={"model": "test/hang", "input": "x"}
            )
            poll = f"{url}/v1/async/embeddings/{submitted.json()['id']}"
            while True:
                if (await http.get(poll)).json()["status"] == "processing":
                    break
                await asyncio.sleep(0.01)
        proc.send_signal(signal.SIGTERM)
        output, _ = await asyncio.to_thread(proc.communicate, timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    # uvicorn re-raises the signal it caught once shutdown is complete
    assert proc.returncode in (0, -signal.SIGTERM), output
    assert "Application shutdown complete" in output or "job.failed" in output, output
    failed = [line for line in output.splitlines() if "job.failed" in line]
    assert len(failed) == 1 and "status_code=500" in failed[0], output
    assert submitted.json()["id"] in failed[0]
