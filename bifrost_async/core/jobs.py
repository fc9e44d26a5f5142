"""The job record: what is stored for each async request, and how it is shown to clients."""

from __future__ import annotations

import dataclasses
import enum
import json
import re
import uuid
from datetime import UTC, datetime
from typing import Any

_UUID4 = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}")


class JobStatus(enum.StrEnum):
    """Where a job is in its life. It only ever moves forward."""

    PENDING = "pending"
    PROCESSING = "processing"
    COMPLETED = "completed"
    FAILED = "failed"

    @property
    def terminal(self) -> bool:
        return self in (JobStatus.COMPLETED, JobStatus.FAILED)


#: The statuses a job may move to from each status.
TRANSITIONS: dict[JobStatus, frozenset[JobStatus]] = {
    JobStatus.PENDING: frozenset({JobStatus.PROCESSING, JobStatus.FAILED}),
    JobStatus.PROCESSING: frozenset({JobStatus.COMPLETED, JobStatus.FAILED}),
    JobStatus.COMPLETED: frozenset(),
    JobStatus.FAILED: frozenset(),
}


def may_move(current: JobStatus, new: JobStatus) -> bool:
    """True if a stored job in ``current`` may be overwritten by one in ``new``: forward moves,
    and rewrites of a non-terminal status (lease renewals)."""
    return new in TRANSITIONS[current] or (new is current and not current.terminal)


def new_job_id() -> str:
    """A random UUID v4 in lowercase 8-4-4-4-12 form (``uuid4`` reads ``os.urandom``)."""
    return str(uuid.uuid4())


def is_job_id(value: str) -> bool:
    """True when ``value`` has the exact shape of the ids :func:`new_job_id` makes."""
    return _UUID4.fullmatch(value) is not None


def rfc3339(timestamp: float) -> str:
    """Format epoch seconds as RFC 3339 UTC with millisecond precision, e.g. ``...T17:04:05.123Z``."""
    # isoformat truncates to milliseconds as ``microsecond // 1000`` did, and is ~35% faster than
    # strftime; this runs for every timestamp of every poll answer.
    return datetime.fromtimestamp(timestamp, tz=UTC).isoformat(timespec="milliseconds")[:-6] + "Z"


@dataclasses.dataclass
class Job:
    """One async request and, once it has ended, its outcome.

    Times are epoch seconds (floats). ``owner`` is a digest of the submitting credential, or
    ``""`` for a public job; the credential itself is never held. The request body is never part
    of a job: it lives only in the runner's spool file until the job has run.
    """

    id: str
    request_id: str
    request_type: str
    status: JobStatus
    created_at: float
    ttl: int
    owner: str = ""
    extra_fields: dict[str, Any] = dataclasses.field(default_factory=dict)
    started_at: float | None = None
    completed_at: float | None = None
    expires_at: float | None = None
    status_code: int | None = None
    result: Any = None
    error: dict[str, Any] | None = None
    #: Longest the job is kept once it has failed (``AsyncJobsConfig.max_failed_ttl``, or ``ttl``
    #: when smaller); ``None``: ``ttl``. Never shown to clients.
    failed_ttl: int | None = None
    #: Until when the worker running the job has promised to be alive (renewed while it runs).
    lease_expires_at: float | None = None
    #: Which worker process runs the job (free text, for operators).
    worker: str | None = None
    #: Small strings plugins attached at submit (``validate_submit`` hook), e.g. the webhook to
    #: call when the job ends. Stored with the job, never shown to clients, never a credential.
    metadata: dict[str, str] = dataclasses.field(default_factory=dict)
    #: Digest of (owner, ``Idempotency-Key``) when the submit sent one; the store expires the
    #: claim with the job. Never shown to clients.
    idempotency_claim: str | None = None
    #: How to rebuild the synchronous endpoint's own response for ``GET .../{id}/result``
    #: (``bifrost_async.core.response``): status, content type, and the body only where ``result`` cannot
    #: reproduce it byte for byte. Never shown in the job JSON.
    raw_response: dict[str, Any] | None = None
    #: Bytes of the endpoint's answer the job keeps (its body, counted again where
    #: ``raw_response`` holds a copy); 0 until the job ends. Stores may budget memory by it.
    #: Never shown to clients.
    result_bytes: int = 0

    def expired(self, now: float) -> bool:
        """True once the result's TTL has run out."""
        return self.expires_at is not None and now >= self.expires_at

    def to_public(self) -> dict[str, Any]:
        """The job as the contract shows it to clients: absent fields are omitted."""
        body: dict[str, Any] = {
            "id": self.id,
            "request_id": self.request_id,
            "status": self.status.value,
            "created_at": rfc3339(self.created_at),
        }
        if self.completed_at is not None:
            body["completed_at"] = rfc3339(self.completed_at)
        if self.expires_at is not None:
            body["expires_at"] = rfc3339(self.expires_at)
        if self.status_code is not None:
            body["status_code"] = self.status_code
        if self.status is JobStatus.COMPLETED:
            body["result"] = self.result
        if self.error is not None:
            body["error"] = self.error
        return body

    def to_record(self) -> dict[str, Any]:
        """A JSON-safe dict of every field, for stores that serialise jobs."""
        record = dataclasses.asdict(self)
        record["status"] = self.status.value
        return record

    def to_record_json(self) -> str:
        """The compact JSON text of :meth:`to_record` (``json.dumps`` with ``(",", ":")``
        separators), byte for byte, without its deep copy: ``dataclasses.asdict`` copies every
        nested value only for ``json.dumps`` to read it once, which is most of the cost of
        serialising a job. Nested dataclass values are still written as their ``asdict``."""
        record = {name: getattr(self, name) for name in _FIELD_NAMES}
        record["status"] = self.status.value
        return json.dumps(record, separators=(",", ":"), default=_nested_dataclass)

    def copy(self) -> Job:
        """A shallow copy, as ``dataclasses.replace(job)`` makes it but ~10x faster (no
        ``__init__`` call with every field): the runner copies on each of its store writes."""
        clone = object.__new__(type(self))
        clone.__dict__.update(self.__dict__)
        return clone

    @classmethod
    def from_record(cls, record: dict[str, Any]) -> Job:
        """Rebuild a job from :meth:`to_record` output (unknown keys are ignored)."""
        names = _FIELD_SET if cls is Job else frozenset(f.name for f in dataclasses.fields(cls))
        values = {key: value for key, value in record.items() if key in names}
        values["status"] = JobStatus(values["status"])
        return cls(**values)


#: Job's field names in declaration order (the key order of :meth:`Job.to_record`).
_FIELD_NAMES: tuple[str, ...] = tuple(field.name for field in dataclasses.fields(Job))
_FIELD_SET = frozenset(_FIELD_NAMES)


def _nested_dataclass(value: object) -> Any:
    """``json.dumps`` fallback of :meth:`Job.to_record_json`: a dataclass nested in a field
    (which ``asdict`` would have turned into a dict) becomes that dict; anything else stays an
    error, as it is for ``json.dumps(job.to_record())``."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return dataclasses.asdict(value)
    raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")
