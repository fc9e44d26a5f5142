"""Log events carry job facts and never a credential or a body."""

from __future__ import annotations

from typing import Any

import httpx
import structlog

from tests.helpers import build_stack


async def test_events_and_no_secrets(serve: Any, http: httpx.AsyncClient) -> None:
    stack = await build_stack(serve)
    with structlog.testing.capture_logs() as logs:
        ok = await stack.submit(
            http,
            "chat/completions",
            json={"model": "m", "messages": [{"role": "user", "content": "body-secret-text"}]},
            headers={"authorization": "Bearer sk-live-credential", "x-api-key": "key-credential"},
        )
        await stack.finish(
            http, "chat/completions", ok, headers={"authorization": "Bearer sk-live-credential"}
        )
        bad = await stack.submit(http, "embeddings", json={"model": "test/crash", "input": "body-secret-2"})
        await stack.recorder.wait("finished", bad.json()["id"])
    events = [entry["event"] for entry in logs]
    assert events.count("job.submitted") == 2 and events.count("job.started") == 2
    assert "job.completed" in events and "job.failed" in events and "job.crashed" in events
    completed = next(entry for entry in logs if entry["event"] == "job.completed")
    assert completed["job_id"] == ok.json()["id"]
    assert completed["status"] == "completed" and completed["status_code"] == 200
    assert completed["request_type"] == "chat_completion" and completed["duration_ms"] >= 0
    text = repr(logs)
    for secret in ("sk-live-credential", "key-credential", "body-secret-text", "body-secret-2"):
        assert secret not in text


async def test_events_of_a_run_carry_the_job_context(serve: Any, http: httpx.AsyncClient) -> None:
    """The worker binds the job's id and type while it runs the job (``merge_contextvars``)."""
    stack = await build_stack(serve)
    capture = structlog.testing.LogCapture()
    saved = structlog.get_config()
    structlog.configure(processors=[structlog.contextvars.merge_contextvars, capture])
    try:
        ok = await stack.submit(http, "embeddings", json={"model": "m", "input": "x"})
        await stack.finish(http, "embeddings", ok)
    finally:
        structlog.configure(**saved)
    started = next(entry for entry in capture.entries if entry["event"] == "job.started")
    assert started["job_id"] == ok.json()["id"] and started["request_type"] == "embedding"
    assert structlog.contextvars.get_contextvars() == {}  # nothing leaked into the test's context
