"""The Python client and ``bifrost-async submit``: end to end against the real proxy (the CLI's
``serve``) in front of the example upstream service, and the contract's errors as exceptions
against the middleware-wrapped test app."""

from __future__ import annotations

import asyncio
import io
import json
import sys
import types
from collections.abc import AsyncIterator
from typing import Any

import pytest

from bifrost_async import client as client_module
from bifrost_async.client import (
    AsyncJobsClient,
    BadRequest,
    JobFailed,
    JobNotFound,
    QueueFull,
    WaitTimeout,
)
from bifrost_async.client.cli import Progress
from tests.helpers import build_stack
from tests.proxy_support import CLIP, ProxyProcess, check_transcript, example_proxy


@pytest.fixture
async def proxy(aiohttp_server: Any) -> AsyncIterator[ProxyProcess]:
    async with example_proxy(aiohttp_server) as running:
        yield running


@pytest.mark.slow  # a proxy process and real speech recognition
async def test_client_transcribes_through_the_proxy(proxy: ProxyProcess) -> None:
    seen: list[str] = []
    async with AsyncJobsClient(proxy.url, api_key="sk-test") as client:
        job = await client.submit(
            "transcription",
            data={"model": "openai/whisper-1"},
            files={"file": ("hello.wav", CLIP.read_bytes(), "audio/wav")},
        )
        assert job.status == "pending" and job.type_path == "audio/transcriptions"
        assert job.retry_after == 1.0
        done = await client.wait(job, timeout=60, interval=0.05, on_poll=lambda j: seen.append(j.status))
        assert done.ok and done.status_code == 200 and seen[-1] == "completed"
        check_transcript(done.result["text"])
        # the job belongs to the key that submitted it
        async with AsyncJobsClient(proxy.url, api_key="sk-other") as stranger:
            with pytest.raises(JobNotFound):
                await stranger.poll(done)


@pytest.mark.slow  # a proxy process and real speech recognition
async def test_cli_submit_wait_transcribes_through_the_proxy(proxy: ProxyProcess) -> None:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bifrost_async",
        "submit",
        str(CLIP),
        "--type",
        "transcription",
        "--url",
        proxy.url,
        "--model",
        "openai/whisper-1",
        "--wait",
        "--timeout",
        "60",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), 90)
    assert process.returncode == 0, err.decode()
    job = json.loads(out)
    assert job["status"] == "completed"
    check_transcript(job["result"]["text"])
    lines = err.decode().splitlines()  # not a terminal: plain lines, one per status change
    assert lines[0].startswith(f"job {job['id']} pending") and lines[-1].startswith(
        f"job {job['id']} completed"
    )
    assert "\r" not in err.decode()


async def test_contract_errors_become_exceptions(serve: Any) -> None:
    stack = await build_stack(serve, concurrency=1, queue_size=1, owner_queue_size=0)
    async with AsyncJobsClient(stack.url) as client:
        with pytest.raises(BadRequest, match="model"):
            await client.submit("embeddings", json={"input": "no model"})
        with pytest.raises(JobNotFound) as missing:
            await client.poll("00000000-0000-4000-8000-000000000000", "embedding")
        assert missing.value.status_code == 404 and missing.value.message == "job not found or expired"

        failed = await client.wait(await client.submit("embedding", json={"model": "test/error"}), 30)
        assert not failed.ok and failed.status_code == 400
        with pytest.raises(JobFailed, match="cannot do that"):
            failed.raise_for_error()

        held = await client.submit("embedding", json={"model": "test/gate", "input": "x"})
        await stack.app.state.gate.arrived.wait()
        queued = await client.submit("embedding", json={"model": "m", "input": "x"})
        with pytest.raises(QueueFull) as full:
            await client.submit("embedding", json={"model": "m", "input": "x"})
        assert full.value.retry_after == 1.0 and full.value.code == "queue_full"
        with pytest.raises(WaitTimeout) as timed_out:
            await client.wait(held, timeout=0.05, interval=0.01)
        assert timed_out.value.job.status == "processing"
        stack.app.state.gate.opened.set()
        for job in (held, queued):
            assert (await client.wait(job, 30, interval=0.01)).ok


async def test_wait_sleeps_as_long_as_retry_after_says(serve: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    stack = await build_stack(serve, retry_after=7)
    pauses: list[float] = []
    real_sleep = asyncio.sleep

    async def recorded_sleep(delay: float) -> None:
        pauses.append(delay)
        if len(pauses) == 1:
            stack.app.state.gate.opened.set()
            await stack.recorder.wait("finished", held.id)
        await real_sleep(0)

    # Only the client's own asyncio sees the recording sleep: the server runs in this loop too,
    # and uvicorn's main loop sleeps 0.1 s per tick.
    patched = types.SimpleNamespace(**{**vars(asyncio), "sleep": recorded_sleep})
    monkeypatch.setattr(client_module, "asyncio", patched)
    async with AsyncJobsClient(stack.url) as client:
        held = await client.submit("embedding", json={"model": "test/gate", "input": "x"})
        done = await client.wait(held, interval=0.01)
    assert done.ok and pauses == [7.0]  # the server's hint, not the client's interval


def test_progress_redraws_on_a_terminal_and_prints_lines_otherwise() -> None:
    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    job = client_module.JobResult(id="j", request_id="r", status="pending", created_at="t", type_path="p")
    tty, plain = Terminal(), io.StringIO()
    for stream in (tty, plain):
        progress = Progress(stream)
        for status in ("pending", "processing", "processing", "completed"):
            progress.update(client_module.dataclasses.replace(job, status=status))
        progress.finish()
    assert tty.getvalue().count("\r") == 4 and "completed" in tty.getvalue()
    assert [line.split()[2] for line in plain.getvalue().splitlines()] == [
        "pending",
        "processing",
        "completed",
    ]
