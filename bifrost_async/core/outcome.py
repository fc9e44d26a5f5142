"""Turn a synchronous endpoint's response into a job outcome, as the contract encodes it."""

from __future__ import annotations

import base64
import dataclasses
import json
from typing import Any

from python_multipart.multipart import parse_options_header

from bifrost_async.core import jsonsafe
from bifrost_async.core.errors import error_body
from bifrost_async.core.jobs import Job, JobStatus

_TEXT_TYPES = (b"text/",)
_JSON_SUFFIX = b"+json"
_MESSAGE_LIMIT = 2000


@dataclasses.dataclass
class CapturedResponse:
    """What the synchronous endpoint answered: status, headers (lowercase names) and body."""

    status: int
    headers: list[tuple[bytes, bytes]]
    body: bytes

    @property
    def content_type(self) -> bytes:
        for key, value in self.headers:
            if key == b"content-type":
                return value
        return b""


@dataclasses.dataclass
class Outcome:
    """How a job ended: ``result`` for success, ``error`` (Bifrost shape) for failure."""

    status_code: int
    result: Any = None
    error: dict[str, Any] | None = None
    #: How to rebuild the endpoint's own response (``bifrost_async.core.response``); ``None`` when there
    #: was none (timeout, crash, cancel).
    raw: dict[str, Any] | None = None
    #: Bytes of the answer kept: the body, plus the copy in ``raw`` when there is one.
    size: int = 0

    @property
    def ok(self) -> bool:
        return self.error is None


def encode_result(response: CapturedResponse) -> Any:
    """The ``result`` value for a 2xx response: JSON as itself, text as ``{"text"}``, anything
    else as ``{"audio": base64, "content_type"}``.

    JSON is read by :func:`bifrost_async.core.jsonsafe.loads` (lone surrogates become U+FFFD,
    non-finite numbers ``null``; too deep: kept as text), so that what is stored can always be
    served; the exact bytes stay available from ``GET .../{id}/result``."""
    mime, params = parse_options_header(response.content_type)
    mime = mime.lower()
    json_like = mime == b"application/json" or mime.endswith(_JSON_SUFFIX)
    if json_like or not mime:
        try:
            return jsonsafe.loads(response.body)
        except jsonsafe.NotPortableJSON:
            pass
    if json_like or mime.startswith(_TEXT_TYPES):
        return {"text": _decode(response.body, params)}
    if not mime:
        try:
            return {"text": jsonsafe.clean_text(response.body.decode("utf-8"))}
        except UnicodeDecodeError:
            pass
    return {
        "audio": base64.b64encode(response.body).decode("ascii"),
        "content_type": response.content_type.decode("latin-1") or "application/octet-stream",
    }


def outcome_from_response(response: CapturedResponse, extra_fields: dict[str, Any]) -> Outcome:
    """A completed outcome for 2xx, a failed one carrying the endpoint's error otherwise."""
    from bifrost_async.core.response import capture_raw  # raw imports this module's CapturedResponse

    if not 200 <= response.status <= 599:
        # 1xx is never final, 600+ is no HTTP status: no client could be given this answer (the
        # raw-result route would break its connection), and a job's status_code is never 0
        return failure(
            502,
            f"the endpoint answered with HTTP status {response.status}, not a final status (200-599)",
            extra_fields,
            type="upstream_error",
            code="invalid_status",
        )
    if 200 <= response.status < 300:
        result = encode_result(response)
        raw = capture_raw(response, result)
        return Outcome(status_code=response.status, result=result, raw=raw, size=_kept(response, raw))
    raw = capture_raw(response, None)
    return Outcome(
        status_code=response.status,
        # the upstream's fields are copied into the error: made servable like a result
        error=jsonsafe.scrub(error_from_body(response.status, response.body, extra_fields)),
        raw=raw,
        size=_kept(response, raw),
    )


def _kept(response: CapturedResponse, raw: dict[str, Any]) -> int:
    return len(response.body) + len(raw.get("body", ""))


def error_from_body(status: int, body: bytes, extra_fields: dict[str, Any]) -> dict[str, Any]:
    """Build the Bifrost error for a non-2xx answer from whatever shape its body has."""
    try:
        value = jsonsafe.loads(body) if body else None
    except jsonsafe.NotPortableJSON:
        value = None
    if isinstance(value, dict):
        inner = value.get("error")
        if isinstance(inner, dict):
            mapped = {k: inner[k] for k in ("type", "code", "param", "event_id") if inner.get(k) is not None}
            message = inner.get("message")
            mapped["message"] = str(message) if message is not None else f"request failed with HTTP {status}"
            result = error_body(status, mapped.pop("message"), extra_fields=extra_fields)
            result["error"].update(mapped)
            if isinstance(value.get("type"), str):
                result["type"] = value["type"]
            if isinstance(value.get("event_id"), str):
                result["event_id"] = value["event_id"]
            if isinstance(value.get("extra_fields"), dict):
                result["extra_fields"] = {**extra_fields, **value["extra_fields"]}
            return result
        for key in ("error", "detail", "message"):
            if isinstance(value.get(key), str):
                return error_body(status, value[key][:_MESSAGE_LIMIT], extra_fields=extra_fields)
    text = body.decode("utf-8", "replace").strip() if body else ""
    if isinstance(value, (list, dict)):
        text = json.dumps(value, ensure_ascii=False)
    message = text[:_MESSAGE_LIMIT] or f"request failed with HTTP {status}"
    return error_body(status, message, extra_fields=extra_fields)


def failure(status: int, message: str, extra_fields: dict[str, Any], *, type: str, code: str) -> Outcome:
    """A failed outcome the service itself decides (timeout, crash, lost worker)."""
    return Outcome(
        status_code=status,
        error=error_body(status, message, type=type, code=code, extra_fields=extra_fields),
    )


def charset(params: dict[bytes, bytes]) -> str:
    """The ``charset`` parameter of a parsed content type (UTF-8 when absent)."""
    return params.get(b"charset", b"utf-8").decode("ascii", "replace") or "utf-8"


def _decode(body: bytes, params: dict[bytes, bytes]) -> str:
    """``body`` as text in its declared charset; UTF-8 when that charset is unknown, is no text
    encoding (``base64``), or refuses the ``replace`` error handler (``idna``)."""
    try:
        text = body.decode(charset(params), "replace")
    except (LookupError, ValueError):  # UnicodeError is a ValueError
        text = body.decode("utf-8", "replace")
    return jsonsafe.clean_text(text)  # unicode_escape and friends can produce lone surrogates


def apply_outcome(job: Job, outcome: Outcome, now: float) -> None:
    """Set ``job`` to its terminal state: status, code, result or error, and its expiry."""
    job.status = JobStatus.COMPLETED if outcome.ok else JobStatus.FAILED
    job.status_code = outcome.status_code
    job.result = outcome.result if outcome.ok else None
    job.error = outcome.error
    job.raw_response = outcome.raw
    job.result_bytes = outcome.size
    job.completed_at = now
    ttl = job.ttl if outcome.ok or job.failed_ttl is None else min(job.ttl, job.failed_ttl)
    job.expires_at = now + ttl
    job.lease_expires_at = None


#: The message of a job failed because its worker's lease ran out.
WORKER_LOST_MESSAGE = "the worker running this job was lost before it finished (its lease ran out)"


def worker_lost(job: Job, now: float) -> Job:
    """A copy of ``job``, failed now (500, code ``worker_lost``) because the worker holding it
    stopped renewing its lease; every place that fails orphans (poll, a store's sweep) uses it."""
    failed = dataclasses.replace(job)
    apply_outcome(failed, worker_lost_outcome(job), now)
    return failed


def worker_lost_outcome(job: Job) -> Outcome:
    """The outcome of a job whose worker's lease ran out (500, code ``worker_lost``), for
    :func:`bifrost_async.core.finish.finish_job`."""
    return failure(500, WORKER_LOST_MESSAGE, job.extra_fields, type="server_error", code="worker_lost")
