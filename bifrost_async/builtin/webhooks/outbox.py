"""Durable webhook deliveries: every process delivers from the job store's shared outbox.

Used instead of the in-process schedule when the job store has the
:class:`~bifrost_async.core.webhook_outbox.WebhookOutbox` capability (the Redis store). What an
attempt *is* does not change: :class:`~bifrost_async.builtin.webhooks.delivery.Dispatcher` builds
it afresh (endpoint and job as they are now), signs it with a fresh timestamp under the job's
stable ``webhook-id``, guards against SSRF, classifies the answer with Bifrost's rule and records
it in the history. Only the *schedule* is durable:

* the entry is written by the job's terminal write itself (see the capability), so a process
  that dies right after ending a job leaves its delivery in the outbox;
* each attempt's back-off is stored with the next attempt's number (:meth:`WebhookOutbox.outbox_retry`),
  so whichever process makes the next attempt knows how many were made and ``max_retries`` holds;
* an entry whose process died mid-attempt is taken over by another after ``outbox_claim_idle``
  seconds; a live process heartbeats what it holds every third of that;
* at shutdown, an attempt that does not finish within the grace is handed back at once (due now),
  so another process takes it without waiting for the claim to go idle.

Delivery is at-least-once: an attempt whose result was not yet recorded when its process died is
made again, under the same ``webhook-id``.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import json
import os
import socket
import time
import uuid

import structlog

from bifrost_async.builtin.webhooks.delivery import Dispatcher
from bifrost_async.builtin.webhooks.messages import Message
from bifrost_async.core.store import StoreError
from bifrost_async.core.webhook_outbox import WebhookOutbox

log = structlog.get_logger(__name__)


def encode(message: Message, attempt_no: int) -> str:
    """The outbox document of ``message``'s attempt number ``attempt_no`` (no credential, no body;
    the nonce keeps two schedules of the same attempt distinct in a set)."""
    fields = dataclasses.asdict(message)
    return json.dumps(
        {**fields, "attempt": attempt_no, "nonce": uuid.uuid4().hex[:12]}, separators=(",", ":")
    )


def decode(document: str) -> tuple[Message, int]:
    """The message and attempt number of an outbox document; ``ValueError`` if malformed."""
    try:
        data = json.loads(document)
        message = Message(*(str(data[f.name]) for f in dataclasses.fields(Message)))
        attempt_no = int(data.get("attempt", 1))
    except (ValueError, KeyError, TypeError):
        raise ValueError("malformed webhook outbox entry") from None
    if attempt_no < 1:
        raise ValueError("malformed webhook outbox entry")
    return message, attempt_no


class OutboxDeliverer:
    """One process's reader of the shared outbox; :meth:`start` and :meth:`stop` bracket its life.

    Up to the dispatcher policy's ``max_concurrent`` attempts run at once; ``poll_seconds`` is the
    longest a due back-off waits to be noticed (new entries are read at once: the read blocks)."""

    def __init__(self, outbox: WebhookOutbox, dispatcher: Dispatcher, *, poll_seconds: float = 1.0) -> None:
        self.outbox = outbox
        self.dispatcher = dispatcher
        self.poll_seconds = poll_seconds
        #: This process's consumer name in the outbox (host, pid and a random part).
        self.consumer = f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        self._held: dict[str, tuple[str, asyncio.Task[None]]] = {}  # entry id -> (document, task)
        self._room = asyncio.Event()
        self._reader: asyncio.Task[None] | None = None
        self._heart: asyncio.Task[None] | None = None

    @property
    def pending(self) -> int:
        """Attempts in flight in this process."""
        return len(self._held)

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._reader = loop.create_task(self._read_forever(), name="webhook-outbox-reader")
        self._heart = loop.create_task(self._heartbeat_forever(), name="webhook-outbox-heartbeat")

    async def stop(self, grace: float) -> None:
        """Stop reading, give attempts in flight ``grace`` seconds, hand back the rest at once."""
        for task in (self._reader, self._heart):
            if task is not None:
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
        self._reader = self._heart = None
        held = dict(self._held)
        if not held:
            return
        _, left = await asyncio.wait([task for _, task in held.values()], timeout=grace)
        for task in left:
            task.cancel()
        await asyncio.gather(*left, return_exceptions=True)
        handed = 0
        for entry_id, (document, task) in held.items():
            if task not in left:
                continue
            try:  # the same attempt again, due now: another process takes it at its next read
                if await self.outbox.outbox_retry(self.consumer, entry_id, document, time.time()):
                    handed += 1
            except StoreError:
                pass  # left held: another process takes it over after outbox_claim_idle
        if left:
            log.warning("webhook.handed_back_at_shutdown", count=len(left), handed_back=handed)

    async def _read_forever(self) -> None:
        limit = self.dispatcher.policy.max_concurrent
        while True:
            room = limit - len(self._held)
            if room <= 0:
                self._room.clear()
                await self._room.wait()
                continue
            try:
                entries = await self.outbox.outbox_read(self.consumer, room, self.poll_seconds)
            except StoreError:
                await asyncio.sleep(self.poll_seconds)  # Redis is down: try again later
                continue
            except Exception:
                log.exception("webhook.outbox_read_failed")
                await asyncio.sleep(self.poll_seconds)
                continue
            for entry_id, document in entries:
                if entry_id in self._held:
                    continue  # reclaimed our own entry while its attempt still runs
                task = asyncio.get_running_loop().create_task(
                    self._attempt(entry_id, document), name=f"webhook-outbox-{entry_id}"
                )
                self._held[entry_id] = (document, task)
                task.add_done_callback(functools.partial(self._release, entry_id))

    def _release(self, entry_id: str, _: object) -> None:
        self._held.pop(entry_id, None)
        self._room.set()

    async def _heartbeat_forever(self) -> None:
        while True:
            await asyncio.sleep(self.outbox.outbox_claim_idle / 3)
            # on an outage the next beat tries again; meanwhile another process may take one over
            with contextlib.suppress(StoreError):
                await self.outbox.outbox_touch(self.consumer, list(self._held))

    async def _attempt(self, entry_id: str, document: str) -> None:
        """One attempt of one entry, then settle it: done, or the next attempt scheduled."""
        try:
            message, attempt_no = decode(document)
        except ValueError:
            log.error("webhook.outbox_entry_malformed", entry_id=entry_id)
            await self._settle(entry_id, None)
            return
        result = await self.dispatcher.attempt_once(message, attempt_no)
        await self.dispatcher.record_attempt(message, result)
        if result.outcome == "retryable_failure":
            due = time.time() + self.dispatcher.retry_delay(result)
            await self._settle(entry_id, (encode(message, attempt_no + 1), due))
            return
        if await self._settle(entry_id, None):
            self.dispatcher.settled(message, result)

    async def _settle(self, entry_id: str, retry: tuple[str, float] | None) -> bool:
        try:
            if retry is None:
                settled = await self.outbox.outbox_done(self.consumer, entry_id)
            else:
                settled = await self.outbox.outbox_retry(self.consumer, entry_id, *retry)
        except StoreError:
            # left held: after outbox_claim_idle another process repeats this attempt (at least once)
            log.warning("webhook.outbox_settle_failed", entry_id=entry_id)
            return False
        if not settled:
            log.warning("webhook.outbox_entry_taken_over", entry_id=entry_id)
        return settled
