"""A Python client for the async job API (this project's or Bifrost's own ``/v1/async/*``).

::

    async with AsyncJobsClient("http://127.0.0.1:8000", api_key="sk-...") as client:
        job = await client.submit("transcription", data={"model": "whisper-1"},
                                  files={"file": ("clip.wav", audio_bytes, "audio/wav")})
        job = await client.wait(job, timeout=300)
        print(job.result)

``submit`` takes a request type (``transcription``) or its path (``audio/transcriptions``).
``wait`` polls, sleeping as long as each answer's ``Retry-After`` says (the contract has no
long-poll, so there is none to use). Errors of the contract become exceptions: :class:`BadRequest`,
:class:`JobNotFound`, :class:`PayloadTooLarge`, :class:`QueueFull`, :class:`ServiceUnavailable`.
A job that ran and failed is not an exception: its :class:`JobResult` has ``ok == False`` and
``error``; call :meth:`JobResult.raise_for_error` to turn it into :class:`JobFailed`.

This package (the library here, the ``submit`` verb in ``cli``) may import only
:mod:`bifrost_async.service.routes` and :mod:`bifrost_async.builtin.upstream` of the server's code.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
import uuid
from collections.abc import Callable, Mapping
from typing import Any, BinaryIO

import aiohttp
from yarl import URL

from bifrost_async.builtin.upstream import IDLE_KEEPALIVE_SECONDS
from bifrost_async.service.routes import DEFAULT_ROUTES

FileSpec = tuple[str, bytes | BinaryIO, str]
#: Most retries ``submit`` makes.
MAX_SUBMIT_RETRIES = 10
_PATHS = {spec.request_type: spec.path for spec in DEFAULT_ROUTES}


class AsyncJobsError(Exception):
    """An error answer of the job API: ``status_code``, ``message``, ``code`` and the whole
    Bifrost-shaped ``body``. ``retry_after`` is the server's hint in seconds, if it sent one."""

    def __init__(self, status_code: int, body: Any, retry_after: float | None = None) -> None:
        inner = body.get("error") if isinstance(body, dict) else None
        inner = inner if isinstance(inner, dict) else {}
        self.status_code = status_code
        self.body = body
        self.message = str(inner.get("message") or body)
        self.code: str | None = inner.get("code")
        self.retry_after = retry_after
        super().__init__(f"{status_code}: {self.message}")


class BadRequest(AsyncJobsError):
    """400: the submit was refused (malformed, streaming, no model, no file, unknown webhook)."""


class JobNotFound(AsyncJobsError):
    """404: unknown, expired, another type's or another owner's job (the contract does not say which)."""


class PayloadTooLarge(AsyncJobsError):
    """413: the body is over the server's limit."""


class QueueFull(AsyncJobsError):
    """429: the job queue is full; retry after ``retry_after``."""


class ServiceUnavailable(AsyncJobsError):
    """503: the store is unavailable or the server is shutting down; retry after ``retry_after``."""


class JobFailed(AsyncJobsError):
    """A job that ran and failed (raised by :meth:`JobResult.raise_for_error`)."""


class WaitTimeout(TimeoutError):
    """:meth:`AsyncJobsClient.wait` gave up before the job ended; ``job`` is the last state seen."""

    def __init__(self, job: JobResult) -> None:
        self.job = job
        super().__init__(f"job {job.id} is still {job.status}")


_ERRORS: dict[int, type[AsyncJobsError]] = {
    400: BadRequest,
    404: JobNotFound,
    413: PayloadTooLarge,
    429: QueueFull,
    503: ServiceUnavailable,
}


@dataclasses.dataclass(frozen=True)
class JobResult:
    """A job as the API shows it. Timestamps are the RFC 3339 strings of the contract."""

    id: str
    request_id: str
    status: str
    created_at: str
    type_path: str
    completed_at: str | None = None
    expires_at: str | None = None
    status_code: int | None = None
    result: Any = None
    error: dict[str, Any] | None = None
    #: Seconds the server asked us to wait before the next poll (``Retry-After``).
    retry_after: float | None = None

    @property
    def done(self) -> bool:
        """True once the job has completed or failed."""
        return self.status in ("completed", "failed")

    @property
    def ok(self) -> bool:
        return self.status == "completed"

    def raise_for_error(self) -> JobResult:
        """Raise :class:`JobFailed` for a failed job; return the job otherwise."""
        if self.status == "failed":
            raise JobFailed(self.status_code or 500, self.error or {})
        return self

    @classmethod
    def from_body(
        cls, body: Mapping[str, Any], type_path: str, retry_after: float | None = None
    ) -> JobResult:
        names = {f.name for f in dataclasses.fields(cls)} - {"type_path", "retry_after"}
        values = {key: body[key] for key in names if key in body}
        return cls(**values, type_path=type_path, retry_after=retry_after)


def type_path(request_type_or_path: str) -> str:
    """``transcription`` -> ``audio/transcriptions``; a path is returned as it is."""
    return _PATHS.get(request_type_or_path, request_type_or_path.strip("/"))


def _retry_after(response: aiohttp.ClientResponse) -> float | None:
    try:
        return max(0.0, float(response.headers["Retry-After"]))
    except (KeyError, ValueError):
        return None  # an HTTP-date or garbage: the caller's default applies


def _form(data: Mapping[str, str] | None, files: Mapping[str, FileSpec] | None) -> aiohttp.FormData:
    """A fresh form per attempt (aiohttp sends a FormData once); file objects are rewound."""
    form = aiohttp.FormData()
    for name, value in (data or {}).items():
        form.add_field(name, value)
    for name, (filename, content, content_type) in (files or {}).items():
        if not isinstance(content, bytes) and content.seekable():
            content.seek(0)
        form.add_field(name, content, filename=filename, content_type=content_type)
    return form


class AsyncJobsClient:
    """Submit, poll and wait for jobs over one aiohttp session.

    ``api_key`` is sent as ``Authorization: Bearer ...`` (the job then belongs to that key);
    ``headers`` are added to every request; ``timeout`` bounds each HTTP request (not a wait).
    Pass ``session`` to share one, which the client then does not close.
    """

    def __init__(
        self,
        base_url: str,
        *,
        api_key: str | None = None,
        prefix: str = "/v1/async",
        headers: Mapping[str, str] | None = None,
        timeout: float = 60.0,
        session: aiohttp.ClientSession | None = None,
    ) -> None:
        url = URL(base_url)
        if url.scheme not in ("http", "https") or not url.host:
            # Without a scheme aiohttp fails at the first request with NonHttpUrlClientError.
            raise ValueError(f"base_url must be an http:// or https:// URL with a host, got {base_url!r}")
        if timeout <= 0:
            raise ValueError(f"timeout must be positive, got {timeout!r}")
        self.base = base_url.rstrip("/") + "/" + prefix.strip("/")
        self._headers = dict(headers or {})
        if api_key:
            self._headers["Authorization"] = f"Bearer {api_key}"
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._session = session
        self._own_session = session is None

    async def __aenter__(self) -> AsyncJobsClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        if self._own_session and self._session is not None:
            await self._session.close()
            self._session = None

    def _http(self) -> aiohttp.ClientSession:
        if self._session is None:
            connector = aiohttp.TCPConnector(keepalive_timeout=IDLE_KEEPALIVE_SECONDS)
            self._session = aiohttp.ClientSession(timeout=self._timeout, connector=connector)
        return self._session

    async def submit(
        self,
        request_type: str,
        *,
        json: Any = None,
        data: Mapping[str, str] | None = None,
        files: Mapping[str, FileSpec] | None = None,
        ttl: int | None = None,
        webhook: str | None = None,
        request_id: str | None = None,
        idempotency_key: str | None = None,
        retries: int = 0,
    ) -> JobResult:
        """Submit a job: a JSON body (``json=``) or a multipart form (``data=`` fields and
        ``files={"file": (filename, bytes or file, content_type)}``). ``ttl`` sets
        ``x-bf-async-job-result-ttl``, ``webhook`` names a configured webhook.

        ``idempotency_key`` is sent as ``Idempotency-Key``: the server runs the request once,
        however often it is sent. ``retries`` (0 to 10) retries a lost connection, a 429 or a
        503 after the server's ``Retry-After``; retrying always sends a key (a fresh one unless
        given), so a retry after a lost reply returns the first job instead of running again.
        """
        if not 0 <= retries <= MAX_SUBMIT_RETRIES:
            raise ValueError(f"retries must be from 0 to {MAX_SUBMIT_RETRIES}, got {retries!r}")
        path = type_path(request_type)
        headers = dict(self._headers)
        if ttl is not None:
            headers["x-bf-async-job-result-ttl"] = str(ttl)
        if webhook is not None:
            headers["x-bf-async-webhook"] = webhook
        if request_id is not None:
            headers["x-request-id"] = request_id
        if idempotency_key is None and retries:
            idempotency_key = str(uuid.uuid4())
        if idempotency_key is not None:
            headers["Idempotency-Key"] = idempotency_key
        for attempt in range(retries + 1):
            try:
                body = _form(data, files) if files or data is not None else None
                async with self._http().post(
                    f"{self.base}/{path}", json=json, data=body, headers=headers
                ) as response:
                    return await self._job(response, path)
            except (QueueFull, ServiceUnavailable, aiohttp.ClientConnectionError) as exc:
                if attempt == retries:
                    raise
                hint = getattr(exc, "retry_after", None)
                await asyncio.sleep(min(hint if hint is not None else 0.5 * 2**attempt, 30.0))
        raise AssertionError("unreachable: the last attempt returns or raises")

    async def poll(self, job: JobResult | str, request_type: str | None = None) -> JobResult:
        """The job's current state (by :class:`JobResult`, or by id and request type)."""
        job_id, path = (
            (job.id, job.type_path) if isinstance(job, JobResult) else (job, type_path(request_type or ""))
        )
        async with self._http().get(f"{self.base}/{path}/{job_id}", headers=self._headers) as response:
            return await self._job(response, path)

    async def wait(
        self,
        job: JobResult,
        # a deadline over many polls that also reports the last state seen (WaitTimeout.job),
        # which wrapping the call in asyncio.timeout would lose
        timeout: float | None = None,  # noqa: ASYNC109
        *,
        interval: float = 1.0,
        on_poll: Callable[[JobResult], None] | None = None,
    ) -> JobResult:
        """Poll until the job ends and return it (completed or failed). Between polls it sleeps
        for the server's ``Retry-After`` (``interval`` when there is none). A 503 while polling is
        waited out the same way; ``timeout`` (seconds) raises :class:`WaitTimeout`."""
        deadline = None if timeout is None else time.monotonic() + timeout
        current = job
        while not current.done:
            pause = current.retry_after if current.retry_after is not None else interval
            if deadline is not None:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise WaitTimeout(current)
                pause = min(pause, left)
            await asyncio.sleep(pause)
            try:
                current = await self.poll(current)
            except ServiceUnavailable as exc:
                current = dataclasses.replace(current, retry_after=exc.retry_after)
            if on_poll is not None:
                on_poll(current)
        return current

    async def _job(self, response: aiohttp.ClientResponse, path: str) -> JobResult:
        try:
            body = await response.json(content_type=None)
        except ValueError:
            body = {"error": {"message": (await response.text())[:500]}}
        if response.status in (200, 202) and isinstance(body, dict) and "id" in body:
            return JobResult.from_body(body, path, _retry_after(response))
        error = _ERRORS.get(response.status, AsyncJobsError)
        raise error(response.status, body, _retry_after(response))
