"""Jobs for store tests: :func:`make_job` builds a pending job, :func:`processing` and
:func:`finished` the copies a worker would write as it takes and ends it."""

from __future__ import annotations

import dataclasses
from typing import Any

from ..jobs import Job, JobStatus, new_job_id
from .clock import FakeClock


def make_job(clock: FakeClock, **changes: Any) -> Job:
    """A pending transcription job with a fresh id; ``changes`` override fields."""
    fields: dict[str, Any] = {
        "id": new_job_id(),
        "request_id": new_job_id(),
        "request_type": "transcription",
        "status": JobStatus.PENDING,
        "created_at": clock(),
        "ttl": 60,
        "owner": "digest-of-someone",
        "extra_fields": {
            "provider": "openai",
            "model_requested": "whisper-1",
            "request_type": "transcription",
        },
    }
    fields.update(changes)
    return Job(**fields)


def finished(job: Job, clock: FakeClock, *, result: Any = None, error: dict[str, Any] | None = None) -> Job:
    """A copy of ``job``, completed (or failed when ``error`` is given) now, expiring after its ttl."""
    now = clock()
    return dataclasses.replace(
        job,
        status=JobStatus.FAILED if error else JobStatus.COMPLETED,
        status_code=500 if error else 200,
        result=None if error else result,
        error=error,
        completed_at=now,
        expires_at=now + job.ttl,
        lease_expires_at=None,
    )


def processing(job: Job, clock: FakeClock) -> Job:
    """A copy of ``job``, taken by a worker now (``processing``, a 30 s lease)."""
    now = clock()
    return dataclasses.replace(
        job, status=JobStatus.PROCESSING, started_at=now, lease_expires_at=now + 30, worker="host:1"
    )
