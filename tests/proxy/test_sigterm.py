"""SIGTERM on the real proxy with a job in flight: the job ends failed, the upstream request is
aborted, and the process exits cleanly."""

from __future__ import annotations

import asyncio
import json
import signal

import httpx

from tests.proxy_support import FaultServer, run_proxy


async def test_sigterm_fails_in_flight_job_and_aborts_upstream() -> None:
    async with FaultServer("slow") as upstream:
        async with run_proxy(upstream.url, "--shutdown-grace", "0.3") as proxy:
            async with httpx.AsyncClient(timeout=10) as client:
                submitted = await client.post(
                    f"{proxy.url}/v1/async/embeddings", json={"model": "m", "input": "x"}
                )
                assert submitted.status_code == 202
                job_id = submitted.json()["id"]
                async with asyncio.timeout(30):  # until the upstream holds the request (a bound on a hang)
                    while True:
                        if upstream.requests:
                            break
                        await asyncio.sleep(0.01)
                assert upstream.requests == 1
            code = await proxy.stop()
            logs = proxy.logs()
        await asyncio.wait_for(upstream.aborted.wait(), 10)
    assert code in (0, -signal.SIGTERM), logs
    events = [json.loads(line) for line in logs.splitlines() if line.startswith("{")]
    finished = [e for e in events if e.get("event") in ("job.completed", "job.failed")]
    assert len(finished) == 1, logs
    assert finished[0]["event"] == "job.failed" and finished[0]["job_id"] == job_id
    assert finished[0]["status_code"] == 500
    assert any(e.get("event") == "async_jobs.stopped" for e in events), logs
