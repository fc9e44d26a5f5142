"""Delivering signed webhook events: a bounded background pool with retries.

The ``job_finished`` hook only *schedules* a delivery (an asyncio task) and returns, so a slow or
dead receiver never holds a worker. At most ``max_concurrent`` attempts are in flight; at most
``max_pending`` events wait (beyond that new events are dropped and reported, so memory stays
bounded). Each attempt has its own timeout and is re-signed with a fresh timestamp under the same
``webhook-id``; a non-2xx answer or a network error is retried with capped exponential backoff.
Delivery is at-least-once for as long as the process lives: events still pending when shutdown's
grace runs out, or when the process dies, are lost (there is no durable outbox).
"""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import hashlib
import hmac
import random
import time
from collections.abc import Callable
from typing import Literal

import aiohttp
import structlog

from .upstream import IDLE_KEEPALIVE_SECONDS

log = structlog.get_logger(__name__)

Outcome = Literal["delivered", "failed", "dropped"]


def sign(key: bytes, msg_id: str, timestamp: int, body: bytes) -> str:
    """The ``webhook-signature`` value: ``v1,<base64 HMAC-SHA256 of "{id}.{timestamp}.{body}">``."""
    digest = hmac.new(key, f"{msg_id}.{timestamp}.".encode() + body, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


@dataclasses.dataclass(frozen=True)
class DeliveryPolicy:
    """Retries, timeouts and bounds of webhook delivery (durations in seconds)."""

    #: Attempts per event, the first included.
    max_attempts: int = 8
    #: Wait before the second attempt; doubled for each further one (with jitter), up to ``backoff_max``.
    backoff_initial: float = 1.0
    backoff_max: float = 300.0
    #: Time one attempt (connect, send, response headers) may take.
    attempt_timeout: float = 10.0
    #: Attempts in flight at once.
    max_concurrent: int = 16
    #: Events waiting or in flight; beyond this new events are dropped.
    max_pending: int = 10_000
    #: At shutdown, time pending deliveries get before they are abandoned.
    shutdown_grace: float = 10.0

    def __post_init__(self) -> None:
        for name in ("max_attempts", "attempt_timeout", "max_concurrent", "max_pending"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be positive")

    def backoff(self, attempt: int) -> float:
        """Seconds to wait after failed attempt number ``attempt`` (1-based): exponential, capped,
        with jitter in [50 %, 100 %] so many failing events do not retry in lockstep."""
        delay: float = min(self.backoff_initial * 2.0 ** (attempt - 1), self.backoff_max)
        return delay * random.uniform(0.5, 1.0)


@dataclasses.dataclass(frozen=True)
class Message:
    """One event for one endpoint, body already rendered (the same bytes on every attempt)."""

    webhook: str
    url: str
    key: bytes = dataclasses.field(repr=False)
    msg_id: str
    event: str
    job_id: str
    body: bytes = dataclasses.field(repr=False)


@dataclasses.dataclass(frozen=True)
class DeliveryReport:
    """What became of one event: ``delivered``, ``failed`` (attempts exhausted) or ``dropped``
    (queue full, or abandoned at shutdown). ``status_code`` is the last answer, if any."""

    webhook: str
    event: str
    job_id: str
    msg_id: str
    outcome: Outcome
    attempts: int
    status_code: int | None


class Dispatcher:
    """Runs deliveries on asyncio tasks with one aiohttp session; :meth:`start` and :meth:`stop`
    bracket its life (the webhook plugin calls them from the lifecycle hooks)."""

    def __init__(
        self, policy: DeliveryPolicy, *, on_delivery: Callable[[DeliveryReport], None] | None = None
    ) -> None:
        self.policy = policy
        self.on_delivery = on_delivery
        self._session: aiohttp.ClientSession | None = None
        self._slots = asyncio.Semaphore(policy.max_concurrent)
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def pending(self) -> int:
        """Events waiting or in flight."""
        return len(self._tasks)

    async def start(self) -> None:
        connector = aiohttp.TCPConnector(
            limit=self.policy.max_concurrent, keepalive_timeout=IDLE_KEEPALIVE_SECONDS
        )
        self._session = aiohttp.ClientSession(connector=connector, raise_for_status=False)

    async def stop(self) -> None:
        """Give pending deliveries ``shutdown_grace``, abandon the rest, close the session."""
        if self._tasks:
            _, left = await asyncio.wait(set(self._tasks), timeout=self.policy.shutdown_grace)
            for task in left:
                task.cancel()
            await asyncio.gather(*left, return_exceptions=True)
            if left:
                log.warning("webhook.abandoned_at_shutdown", count=len(left))
        if self._session is not None:
            await self._session.close()
            self._session = None

    def submit(self, message: Message) -> None:
        """Schedule ``message`` and return at once (called from the ``job_finished`` hook)."""
        if self._session is None or len(self._tasks) >= self.policy.max_pending:
            reason = "not started" if self._session is None else "too many pending deliveries"
            log.error("webhook.dropped", webhook=message.webhook, job_id=message.job_id, reason=reason)
            self._report(message, "dropped", 0, None)
            return
        task = asyncio.get_running_loop().create_task(
            self._deliver(message), name=f"webhook-{message.msg_id}"
        )
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _deliver(self, message: Message) -> None:
        status: int | None = None
        attempt = 0
        try:
            for attempt in range(1, self.policy.max_attempts + 1):
                async with self._slots:  # only the attempt holds a slot, never the backoff wait
                    status = await self._attempt(message, attempt)
                if status is not None and 200 <= status < 300:
                    log.info(
                        "webhook.delivered", webhook=message.webhook, job_id=message.job_id, attempts=attempt
                    )
                    self._report(message, "delivered", attempt, status)
                    return
                if attempt < self.policy.max_attempts:
                    await asyncio.sleep(self.policy.backoff(attempt))
        except asyncio.CancelledError:
            self._report(message, "dropped", attempt, status)
            raise
        log.error("webhook.failed", webhook=message.webhook, job_id=message.job_id, attempts=attempt)
        self._report(message, "failed", attempt, status)

    async def _attempt(self, message: Message, attempt: int) -> int | None:
        """One signed POST; its status, or ``None`` when it did not get an answer."""
        assert self._session is not None
        stamp = int(time.time())
        headers = {
            "content-type": "application/json",
            "user-agent": "bifrost-async-webhooks",
            "webhook-id": message.msg_id,
            "webhook-timestamp": str(stamp),
            "webhook-signature": sign(message.key, message.msg_id, stamp, message.body),
        }
        try:
            async with self._session.post(
                message.url,
                data=message.body,
                headers=headers,
                allow_redirects=False,  # only the configured URL is ever called
                timeout=aiohttp.ClientTimeout(total=self.policy.attempt_timeout),
            ) as response:
                status = response.status
        except (aiohttp.ClientError, TimeoutError) as exc:
            log.warning(
                "webhook.attempt_failed",
                webhook=message.webhook,
                job_id=message.job_id,
                attempt=attempt,
                error=type(exc).__name__,
            )
            return None
        if not 200 <= status < 300:
            log.warning(
                "webhook.attempt_failed",
                webhook=message.webhook,
                job_id=message.job_id,
                attempt=attempt,
                status_code=status,
            )
        return status

    def _report(self, message: Message, outcome: Outcome, attempts: int, status: int | None) -> None:
        if self.on_delivery is None:
            return
        report = DeliveryReport(
            message.webhook, message.event, message.job_id, message.msg_id, outcome, attempts, status
        )
        try:
            self.on_delivery(report)
        except Exception:
            log.exception("webhook.report_failed")
