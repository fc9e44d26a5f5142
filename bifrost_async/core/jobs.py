"""The job record: what is stored for each async request, and how it is shown to clients."""

from __future__ import annotations

import dataclasses
import enum
import json
import os
import re
from collections.abc import Callable
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
    """A random UUID v4 in lowercase 8-4-4-4-12 form: 16 bytes of ``os.urandom`` with the
    version (4) and variant (RFC 4122) bits set, exactly what ``str(uuid.uuid4())`` gives, in
    half its time (no ``UUID`` object, no int round trip); a job takes two (id, request id)."""
    raw = bytearray(os.urandom(16))
    raw[6] = (raw[6] & 0x0F) | 0x40
    raw[8] = (raw[8] & 0x3F) | 0x80
    text = raw.hex()
    return f"{text[:8]}-{text[8:12]}-{text[12:16]}-{text[16:20]}-{text[20:]}"


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

    The fields hold three things, kept in one record so that a store writes a job in one
    compare-and-set (and so that the stored format stays what it is):

    - **the public record**, what :meth:`to_public` shows: ``id``, ``request_id``, ``status``,
      ``created_at``, ``completed_at``, ``expires_at``, ``status_code``, ``result``, ``error``;
    - **storage bookkeeping**, never shown: ``request_type``, ``ttl``, ``failed_ttl``, ``owner``,
      ``extra_fields``, ``metadata``, ``idempotency_claim``, ``raw_response``, ``result_bytes``;
    - **lease state**, the worker running it: ``started_at``, ``lease_expires_at``, ``worker``.
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
        """Every field by name, ``status`` as its string: the record stores persist (as the JSON
        text :meth:`to_record_json` makes of it) and :meth:`from_record` reads back.

        The values are the job's own, not copies: read or serialise the record, do not change
        its nested dicts (``copy.deepcopy`` it to keep a detached one; :meth:`copy` copies a
        job). Until issue 15 this was ``dataclasses.asdict``, whose deep copy of every nested
        value was most of the cost of serialising a job and was only ever read once;
        ``bench/record_copy.py`` measures the difference (``bench/RESULTS.md``)."""
        record = {name: getattr(self, name) for name in _FIELD_NAMES}
        record["status"] = self.status.value
        return record

    def to_record_json(self) -> str:
        """The compact JSON text of :meth:`to_record` (``json.dumps`` with ``(",", ":")``
        separators): what the SQLite, Postgres and Redis stores persist. A dataclass nested in a
        field is written as its ``dataclasses.asdict``, as the deep-copying ``to_record`` of
        earlier versions wrote it, so the stored text is byte for byte what it always was."""
        return _RECORD_ENCODER.encode(self.to_record())

    def copy(self) -> Job:
        """A shallow copy (nested dicts are shared, as with ``copy.copy``): the one way jobs are
        copied, by the memory store on every read and write and by the runner and
        :func:`~bifrost_async.core.finish.finish_job` before each store write. It fills the
        clone's ``__dict__`` directly: ~3x faster than ``copy.copy`` (no ``__reduce_ex__``) and
        ~5x faster than ``dataclasses.replace`` (no ``__init__`` with every field)."""
        clone = object.__new__(type(self))
        clone.__dict__.update(self.__dict__)
        return clone

    @classmethod
    def from_record_json(cls, text: bytes | str) -> Job:
        """Rebuild a job from the JSON text of :meth:`to_record_json`: what the stores read back.

        Parsed by orjson when the optional ``fast-json`` extra is installed (~5x faster on a
        pending record, ~8x on a completed one: ``bench/RESULTS.md``), else by ``json.loads``.
        The values are the same either way: what orjson refuses and the standard library reads
        (``NaN``, an integer beyond 64 bits, a lone surrogate escape) goes to ``json.loads``."""
        return cls.from_record(loads_record(text))

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
    (which the old ``asdict`` record turned into a dict) becomes that dict; anything else that
    is not JSON stays a ``TypeError``."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return dataclasses.asdict(value)
    raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")


#: The encoder ``json.dumps(..., separators=(",", ":"), default=_nested_dataclass)`` would build
#: on every call, built once (~1-2 µs per store write; ``JSONEncoder.encode`` keeps no state).
_RECORD_ENCODER = json.JSONEncoder(separators=(",", ":"), default=_nested_dataclass)


def _orjson_loads() -> Callable[[bytes | str], Any] | None:
    """orjson's ``loads`` when the optional ``fast-json`` extra is installed."""
    try:
        import orjson
    except ImportError:  # pragma: no cover - where orjson is not installed
        return None
    loads: Callable[[bytes | str], Any] = orjson.loads  # typed whether or not orjson is installed
    return loads


#: The fast parser :func:`loads_record` tries first (orjson's, or ``None``); tests set it to compare.
fast_loads: Callable[[bytes | str], Any] | None = _orjson_loads()


#: ``bytes.translate`` table: every digit becomes ``0``, every other byte a space.
_DIGITS_ONLY = bytes(0x30 if 0x30 <= byte <= 0x39 else 0x20 for byte in range(256))
#: Nineteen digits in a row: a JSON integer that may lie beyond 64 bits (``json.dumps`` writes
#: every float with a point or an exponent in 17 digits at most, so only an integer, or a string,
#: holds such a run).
_LONG_RUN = b"0" * 19


def loads_record(text: bytes | str) -> Any:
    """``json.loads(text)``, by orjson first when it is installed (:data:`fast_loads`): stored
    records are written by :meth:`Job.to_record_json`, i.e. by ``json.dumps``, which may write
    what orjson refuses (``NaN``, ``1e400``, a lone surrogate escape: those go to ``json.loads``)
    or reads differently: an integer beyond 64 bits, which orjson makes a float. A record with a
    run of 19 digits anywhere (such an integer, or a string of digits) is read by ``json.loads``
    too, so the result never differs (a ``bytes.translate`` finds it in ~1 µs per KB)."""
    if fast_loads is not None:
        raw = text.encode() if isinstance(text, str) else text
        if _LONG_RUN not in raw.translate(_DIGITS_ONLY):
            try:
                return fast_loads(raw)
            except ValueError:  # orjson.JSONDecodeError is one
                pass
    return json.loads(text)
