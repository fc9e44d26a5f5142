"""What webhook delivery passes around: the event to deliver, one attempt's request, its
result, and the report of what became of the event."""

from __future__ import annotations

import dataclasses
from collections.abc import Awaitable, Callable
from typing import Literal

Outcome = Literal["delivered", "failed", "dropped"]


@dataclasses.dataclass(frozen=True)
class Message:
    """One event for one endpoint; each attempt's request is built afresh by ``prepare``."""

    endpoint_id: str
    webhook: str
    msg_id: str
    event: str
    job_id: str


@dataclasses.dataclass(frozen=True)
class Attempt:
    """One attempt's request and the endpoint settings that govern it."""

    url: str
    key: bytes = dataclasses.field(repr=False)
    body: bytes = dataclasses.field(repr=False)
    headers: dict[str, str] = dataclasses.field(repr=False)
    allow_private_network: bool
    max_retries: int
    backoff_initial: float
    backoff_max: float
    timeout: float
    #: Keep the body in the delivery history (the endpoint's ``record_request_body``).
    record_body: bool = False


@dataclasses.dataclass(frozen=True)
class AttemptResult:
    """What one attempt got: ``status_code`` (``None``: no answer), ``error`` (no secret, no body),
    ``outcome`` (Bifrost's: delivered, retryable_failure, permanent_failure, exhausted)."""

    attempt_no: int
    status_code: int | None
    error: str
    outcome: str
    duration_ms: int
    attempt: Attempt | None


@dataclasses.dataclass(frozen=True)
class DeliveryReport:
    """What became of one event: ``delivered``, ``failed`` (permanent or attempts exhausted) or
    ``dropped`` (queue full, or abandoned at shutdown). ``status_code`` is the last answer."""

    webhook: str
    event: str
    job_id: str
    msg_id: str
    outcome: Outcome
    attempts: int
    status_code: int | None


Prepare = Callable[[Message], Awaitable[Attempt | str]]
Record = Callable[[Message, AttemptResult], Awaitable[None]]
