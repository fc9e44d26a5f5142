"""The webhook event body as Bifrost renders it, and the attempt built around it.

Thin by default: ``{"event", "created_at", "data": {job_id, request_type, status, status_code,
created_at, completed_at, result_url, result_expires_at}}``. The upstream response (or the
error, for a failed job) is inline under ``response`` / ``error`` only when the endpoint has
``include_response`` and it fits ``max_response_payload_kbs``; otherwise ``response_omitted`` /
``error_omitted`` says so. Once the job's result has expired the body carries only ``job_id``,
``status`` and ``result_expired: true``.
"""

from __future__ import annotations

import time
from typing import Any, Protocol

from bifrost_async.builtin.webhooks.config import decode_secret
from bifrost_async.builtin.webhooks.delivery import Attempt, Message
from bifrost_async.builtin.webhooks.endpoints import Endpoint
from bifrost_async.core.jobs import Job, JobStatus, rfc3339
from bifrost_async.core.jsonsafe import dumps as encode_json


class PollPaths(Protocol):
    """What rendering needs from the plugin: where a job's result is polled."""

    def poll_path(self, request_type: str, job_id: str) -> str: ...


def render(paths: PollPaths, endpoint: Endpoint, message: Message, job: Job | None) -> bytes:
    """The body of one attempt: built afresh, so a result that expired says so."""
    now = rfc3339(time.time())
    status = "failed" if message.event == "async_job.failed" else "completed"
    if job is None or job.expired(time.time()):
        # the outcome is known but the result, and any fetch-back, is gone: no result_url
        expired = {"job_id": message.job_id, "status": status, "result_expired": True}
        return encode_json({"event": message.event, "created_at": now, "data": expired})
    data: dict[str, Any] = {
        "job_id": job.id,
        "request_type": job.request_type,
        "status": job.status.value,
        "status_code": job.status_code,
        "created_at": rfc3339(job.created_at),
    }
    if job.completed_at is not None:
        data["completed_at"] = rfc3339(job.completed_at)
    data["result_url"] = paths.poll_path(job.request_type, job.id)
    if job.expires_at is not None:
        data["result_expires_at"] = rfc3339(job.expires_at)
    if endpoint.include_response:
        cap = endpoint.tuning("max_response_payload_kbs") * 1024
        field, value = ("response", job.result) if job.status is JobStatus.COMPLETED else ("error", job.error)
        if value is not None:
            inline = encode_json(value)
            if len(inline) <= cap:
                data[field] = value
            else:
                data[f"{field}_omitted"] = True  # the receiver fetches it from result_url instead
    return encode_json({"event": message.event, "created_at": now, "data": data})


def sample(paths: PollPaths, endpoint: Endpoint, event: str, job_id: str) -> bytes:
    """A synthetic event for the test call: same shape, a made-up job that never existed."""
    now = time.time()
    status = JobStatus.FAILED if event == "async_job.failed" else JobStatus.COMPLETED
    job = Job(
        id=job_id, request_id=job_id, request_type="chat_completion", status=status, created_at=now, ttl=0
    )
    job.completed_at, job.status_code = now, 500 if status is JobStatus.FAILED else 200
    no_response = Endpoint(name=endpoint.name, url=endpoint.url, secret="", include_response=False)
    return render(paths, no_response, Message(endpoint.id, endpoint.name, job_id, event, job_id), job)


def attempt_for(endpoint: Endpoint, body: bytes) -> Attempt:
    """The attempt's request and the endpoint settings that govern it."""
    return Attempt(
        url=endpoint.url,
        key=decode_secret(endpoint.secret),
        body=body,
        headers=dict(endpoint.headers),
        allow_private_network=endpoint.allow_private_network,
        max_retries=endpoint.tuning("max_retries"),
        backoff_initial=float(endpoint.tuning("retry_backoff_initial_seconds")),
        backoff_max=float(endpoint.tuning("retry_backoff_max_seconds")),
        timeout=float(endpoint.tuning("attempt_timeout_seconds")),
        record_body=endpoint.record_request_body,
    )
