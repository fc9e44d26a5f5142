"""The README's first hour, scripted: its own commands (install excepted) against real processes.

The example app with its curl submit and poll (httpx standing in for curl), then the standalone
proxy in front of the example upstream, the Python client and ``bifrost-async submit``.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys

import httpx
import pytest

from bifrost_async.client import AsyncJobsClient
from tests.example_support import Start, bound_url
from tests.proxy_support import CLIP, ROOT, check_transcript, free_port, run_proxy, wait_job

#: Bounds only a broken run: recognising the clip takes about a second.
DEADLINE = 60.0


async def submit_clip(client: httpx.AsyncClient, base: str) -> httpx.Response:
    """``curl -s -F model=openai/whisper-1 -F file=@examples/hello.wav <base>/v1/async/...``"""
    with CLIP.open("rb") as clip:
        return await client.post(
            base + "/v1/async/audio/transcriptions",
            data={"model": "openai/whisper-1"},
            files={"file": ("hello.wav", clip.read(), "application/octet-stream")},
        )


@pytest.mark.slow
async def test_first_screen_example_app_then_curl_submit_and_poll(start_example: Start) -> None:
    port = free_port()
    app = await start_example("transcription_app.py", "--port", str(port))
    assert app.process.stderr is not None
    async with asyncio.timeout(DEADLINE):  # uvicorn says on stderr where it listens, once bound
        while f":{port}" not in (line := (await app.process.stderr.readline()).decode()):
            assert line, await app.process.wait()
    base = f"http://127.0.0.1:{port}"
    async with httpx.AsyncClient(timeout=DEADLINE) as client:
        submitted = await submit_clip(client, base)
        assert submitted.status_code == 202, submitted.text
        job = submitted.json()
        assert set(job) == {"id", "request_id", "status", "created_at"} and job["status"] == "pending"
        done = await wait_job(client, f"{base}/v1/async/audio/transcriptions/{job['id']}", deadline=DEADLINE)
    assert done.status_code == 200, done.text
    body = done.json()
    assert body["status"] == "completed" and body["status_code"] == 200
    check_transcript(body["result"]["text"])


@pytest.mark.slow
async def test_proxy_upstream_client_and_cli(start_example: Start) -> None:
    upstream = await start_example("upstream_service.py", "--port", "0")
    upstream_url = bound_url(await upstream.line_with("listening on"))
    async with run_proxy(upstream_url) as proxy, httpx.AsyncClient(timeout=DEADLINE) as client:
        # curl submit and poll through the proxy
        submitted = await submit_clip(client, proxy.url)
        assert submitted.status_code == 202, submitted.text
        done = await wait_job(client, proxy.url + submitted.headers["location"], deadline=DEADLINE)
        assert done.json()["status"] == "completed", done.text
        check_transcript(done.json()["result"]["text"])

        # the Python client, as in the README
        async with AsyncJobsClient(proxy.url, api_key="sk-first-hour") as jobs:
            job = await jobs.submit(
                "transcription",
                data={"model": "openai/whisper-1"},
                files={"file": ("clip.wav", CLIP.read_bytes(), "audio/wav")},
            )
            job = await jobs.wait(job, timeout=DEADLINE)
        assert job.ok, job.error
        check_transcript(job.result["text"])

        # bifrost-async submit ... --wait
        cli = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "bifrost_async", "submit", str(CLIP), "--type", "transcription",
            "--url", proxy.url, "--model", "whisper-1", "--wait",
            cwd=ROOT,
            env={k: v for k, v in os.environ.items() if not k.startswith("BIFROST_ASYNC_")},
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        out, err = await asyncio.wait_for(cli.communicate(), DEADLINE)
        assert cli.returncode == 0, err.decode()
        printed = json.loads(out)
        assert printed["status"] == "completed"
        check_transcript(printed["result"]["text"])
        assert "completed" in err.decode()  # progress on stderr, plain lines off a terminal
