"""Delivering signed webhook events: a bounded background pool with Bifrost's retry rule.

The ``job_finished`` hook only *schedules* a delivery (an asyncio task) and returns, so a slow or
dead receiver never holds a worker. At most ``max_concurrent`` attempts are in flight; at most
``max_pending`` events wait (beyond that new events are dropped and reported, so memory stays
bounded). Each attempt is built afresh (the endpoint and the job as they are now), has the
endpoint's timeout and is signed with a fresh timestamp under the same ``webhook-id``. Only no
answer, 408, 429 and 5xx are retried, ``max_retries`` times with capped exponential back-off;
any other non-2xx is permanent after one attempt. Endpoints without ``allow_private_network``
are only called on public addresses (checked when connecting: an SSRF guard).
Scheduled here, delivery is at-least-once for as long as the process lives: events still pending
when shutdown's grace runs out, or when the process dies, are lost. On a store with a durable
outbox, :mod:`bifrost_async.builtin.webhooks.outbox` schedules instead, one attempt at a time
through :meth:`Dispatcher.attempt_once`, and nothing pending is lost with a process.
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

import aiohttp
import aiohttp.abc
import structlog

from bifrost_async.builtin.upstream import IDLE_KEEPALIVE_SECONDS
from bifrost_async.builtin.webhooks.endpoints import TUNING
from bifrost_async.builtin.webhooks.messages import Attempt as Attempt
from bifrost_async.builtin.webhooks.messages import AttemptResult as AttemptResult
from bifrost_async.builtin.webhooks.messages import DeliveryReport as DeliveryReport
from bifrost_async.builtin.webhooks.messages import Message as Message
from bifrost_async.builtin.webhooks.messages import Outcome, Prepare, Record
from bifrost_async.builtin.webhooks.network import PublicOnlyResolver, refused_literal
from bifrost_async.core.store import StoreError

log = structlog.get_logger(__name__)


def sign(key: bytes, msg_id: str, timestamp: int, body: bytes) -> str:
    """The ``webhook-signature`` value: ``v1,<base64 HMAC-SHA256 of "{id}.{timestamp}.{body}">``."""
    digest = hmac.new(key, f"{msg_id}.{timestamp}.".encode() + body, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


@dataclasses.dataclass(frozen=True)
class DeliveryPolicy:
    """Process-wide bounds of webhook delivery (durations in seconds). Retries, back-off and the
    attempt timeout are per endpoint (:class:`Attempt`), with Bifrost's defaults."""

    #: Attempts in flight at once.
    max_concurrent: int = 16
    #: Events waiting or in flight; beyond this new events are dropped.
    max_pending: int = 10_000
    #: At shutdown, time pending deliveries get before they are abandoned.
    shutdown_grace: float = 10.0
    #: Multiplies every per-endpoint back-off (tests shrink Bifrost's 30 s to milliseconds).
    backoff_scale: float = 1.0

    def __post_init__(self) -> None:
        for name in ("max_concurrent", "max_pending"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be positive")
        if self.shutdown_grace < 0 or not 0 < self.backoff_scale <= 1:
            raise ValueError("shutdown_grace must be >= 0 and backoff_scale in (0, 1]")


def backoff(retry: int, initial: float, ceiling: float) -> float:
    """Bifrost's wait before retry number ``retry`` (1-based): ``initial * 2**(retry-1)`` capped at
    ``ceiling``, with ±20 % jitter so failing deliveries do not retry in lockstep."""
    delay = min(initial * 2.0 ** min(retry - 1, 60), ceiling)
    return min(delay * random.uniform(0.8, 1.2), ceiling)


def retryable(status: int | None) -> bool:
    """Bifrost's rule: no answer, 408, 429 and 5xx are retried; other non-2xx are permanent
    (3xx too: redirects are never followed)."""
    return status is None or status in (408, 429) or status >= 500


#: Retries and back-off when an attempt cannot even be built (the store is unreachable).
DEFAULT_RETRIES = TUNING["max_retries"][0]
DEFAULT_BACKOFF = float(TUNING["retry_backoff_initial_seconds"][0])
DEFAULT_CEILING = float(TUNING["retry_backoff_max_seconds"][0])


class Dispatcher:
    """Runs deliveries on asyncio tasks; :meth:`start` and :meth:`stop` bracket its life.

    ``prepare`` builds each attempt from the endpoint and job as they are *now* (or returns why
    no attempt can be made); ``record`` stores each attempt's result (history, counters)."""

    def __init__(
        self,
        policy: DeliveryPolicy,
        *,
        prepare: Prepare,
        record: Record,
        on_delivery: Callable[[DeliveryReport], None] | None = None,
    ) -> None:
        self.policy = policy
        self.prepare = prepare
        self.record = record
        self.on_delivery = on_delivery
        self._strict: aiohttp.ClientSession | None = None
        self._private: aiohttp.ClientSession | None = None
        self._slots = asyncio.Semaphore(policy.max_concurrent)
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def pending(self) -> int:
        """Events waiting or in flight."""
        return len(self._tasks)

    async def start(self) -> None:
        def session(resolver: aiohttp.abc.AbstractResolver) -> aiohttp.ClientSession:
            connector = aiohttp.TCPConnector(
                limit=self.policy.max_concurrent, keepalive_timeout=IDLE_KEEPALIVE_SECONDS, resolver=resolver
            )
            return aiohttp.ClientSession(connector=connector, raise_for_status=False)

        self._strict, self._private = (
            session(PublicOnlyResolver()),
            session(PublicOnlyResolver(private_ok=True)),
        )

    async def stop(self) -> None:
        """Give pending deliveries ``shutdown_grace``, abandon the rest, close the sessions."""
        if self._tasks:
            _, left = await asyncio.wait(set(self._tasks), timeout=self.policy.shutdown_grace)
            for task in left:
                task.cancel()
            await asyncio.gather(*left, return_exceptions=True)
            if left:
                log.warning("webhook.abandoned_at_shutdown", count=len(left))
        for held in (self._strict, self._private):
            if held is not None:
                await held.close()
        self._strict = self._private = None

    def submit(self, message: Message) -> None:
        """Schedule ``message`` and return at once (from the ``job_finished`` hook or the API)."""
        if self._strict is None or len(self._tasks) >= self.policy.max_pending:
            reason = "not started" if self._strict is None else "too many pending deliveries"
            log.error("webhook.dropped", webhook=message.webhook, job_id=message.job_id, reason=reason)
            self.report(message, "dropped", 0, None)
            return
        task = asyncio.get_running_loop().create_task(
            self._deliver(message), name=f"webhook-{message.msg_id}"
        )
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _deliver(self, message: Message) -> None:
        result: AttemptResult | None = None
        attempt_no = 0
        try:
            while True:
                attempt_no += 1
                async with self._slots:  # only the attempt holds a slot, never the back-off wait
                    result = await self.attempt_once(message, attempt_no)
                await self.record_attempt(message, result)
                if result.outcome != "retryable_failure":
                    break
                await asyncio.sleep(self.retry_delay(result))
        except asyncio.CancelledError:
            self.report(message, "dropped", attempt_no, result.status_code if result else None)
            raise
        self.settled(message, result)

    def retry_delay(self, result: AttemptResult) -> float:
        """Seconds to wait before the attempt after ``result`` (a retryable failure): the
        endpoint's back-off, or Bifrost's defaults when the endpoint could not be read."""
        a = result.attempt
        initial, ceiling = (a.backoff_initial, a.backoff_max) if a else (DEFAULT_BACKOFF, DEFAULT_CEILING)
        scale = self.policy.backoff_scale
        return backoff(result.attempt_no, initial * scale, ceiling * scale)

    def settled(self, message: Message, result: AttemptResult) -> None:
        """Log and report an event whose last attempt was ``result`` (delivered or failed)."""
        attempts, status = result.attempt_no, result.status_code
        if result.outcome == "delivered":
            log.info("webhook.delivered", webhook=message.webhook, job_id=message.job_id, attempts=attempts)
            self.report(message, "delivered", attempts, status)
        else:
            log.error("webhook.failed", webhook=message.webhook, job_id=message.job_id, attempts=attempts)
            self.report(message, "failed", attempts, status)

    async def attempt_once(self, message: Message, attempt_no: int) -> AttemptResult:
        """Build and send one signed attempt; classify it as Bifrost does."""
        started = time.monotonic()
        try:
            prepared = await self.prepare(message)
        except StoreError:  # the store is down for now: not the receiver's fault, try again later
            outcome = "retryable_failure" if attempt_no <= DEFAULT_RETRIES else "exhausted"
            return AttemptResult(attempt_no, None, "job store unavailable", outcome, 0, None)
        if isinstance(prepared, str):  # e.g. the endpoint was deleted or disabled meanwhile
            return AttemptResult(attempt_no, None, prepared, "permanent_failure", 0, None)
        status, error = await self.post(message, prepared)
        if status is not None and 200 <= status < 300:
            outcome = "delivered"
        elif not retryable(status) or error.startswith("refused:"):
            outcome = "permanent_failure"
        else:
            outcome = "exhausted" if attempt_no > prepared.max_retries else "retryable_failure"
        duration = int((time.monotonic() - started) * 1000)
        if outcome != "delivered":
            log.warning(
                "webhook.attempt_failed",
                webhook=message.webhook,
                job_id=message.job_id,
                attempt=attempt_no,
                status_code=status,
                outcome=outcome,
            )
        return AttemptResult(attempt_no, status, error, outcome, duration, prepared)

    async def post(self, message: Message, attempt: Attempt) -> tuple[int | None, str]:
        """One signed POST: the receiver's status (``None``: no answer) and an error text."""
        refused = refused_literal(attempt.url, attempt.allow_private_network)
        if refused is not None:
            return None, f"refused: {refused}"
        session = self._private if attempt.allow_private_network else self._strict
        assert session is not None
        stamp = int(time.time())
        headers = {
            **attempt.headers,  # custom first: the reserved delivery headers below always win
            "content-type": "application/json",
            "user-agent": "Bifrost-Webhooks/1.0",
            "webhook-id": message.msg_id,
            "webhook-timestamp": str(stamp),
            "webhook-signature": sign(attempt.key, message.msg_id, stamp, attempt.body),
            "X-Bifrost-Event": message.event,
        }
        try:
            async with session.post(
                attempt.url,
                data=attempt.body,
                headers=headers,
                allow_redirects=False,  # only the configured URL is ever called
                timeout=aiohttp.ClientTimeout(total=attempt.timeout),
            ) as response:
                status = response.status
                if 200 <= status < 300:
                    return status, ""
                return status, f"receiver responded {status}"  # its body is not kept: it may hold data
        except aiohttp.ClientConnectorError as exc:
            private = isinstance(exc.os_error, OSError) and "private network" in str(exc.os_error)
            return (
                None,
                "refused: webhook host resolves to a private network address" if private else "connect error",
            )
        except (aiohttp.ClientError, TimeoutError) as exc:
            return None, type(exc).__name__

    async def record_attempt(self, message: Message, result: AttemptResult) -> None:
        """Store the attempt in the history (a failure to store is logged, never raised)."""
        try:
            await self.record(message, result)
        except Exception:
            log.exception("webhook.record_failed", webhook=message.webhook, job_id=message.job_id)

    def report(self, message: Message, outcome: Outcome, attempts: int, status: int | None) -> None:
        """Tell ``on_delivery`` what became of an event (its exceptions are logged)."""
        if self.on_delivery is None:
            return
        report = DeliveryReport(
            message.webhook, message.event, message.job_id, message.msg_id, outcome, attempts, status
        )
        try:
            self.on_delivery(report)
        except Exception:
            log.exception("webhook.report_failed")
