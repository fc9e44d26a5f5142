"""A durable outbox for webhook deliveries: an optional job store capability.

Without it, webhook deliveries are scheduled in the memory of the process that ended the job, and
a delivery still pending when that process dies (or when its shutdown grace ends) is lost. A job
store that also implements :class:`WebhookOutbox` keeps every pending delivery in the shared
store instead, so any process sharing it can deliver it:

* **enqueue at job end, atomically**: once the webhooks plugin has called :meth:`outbox_attach`,
  the store's terminal write of a job (``update`` to ``completed``/``failed``) also appends the
  document ``entry_for(job)`` returns, in the same atomic step as the compare-and-set. Only the
  write that lands appends it, so each ended job is enqueued once, and no crash between the two
  can lose it;
* **claim**: every process's deliverer reads entries with :meth:`outbox_read` (new ones, due
  retries, and entries whose reader has been silent longer than :attr:`outbox_claim_idle`: it died);
* **settle**: after an attempt, :meth:`outbox_done` (delivered or failed for good) or
  :meth:`outbox_retry` (back-off: the next attempt's document, due at a time) settles the entry;
  both act only while the caller still holds it, so a reader that lost the entry to a reclaim
  cannot schedule a second chain of retries;
* **heartbeat**: :meth:`outbox_touch` tells the store the caller still works on its entries.

Documents are opaque to the store (the webhooks plugin renders them; they never hold a
credential or a body). The Redis store implements this with a stream and a consumer group
(``bifrost_async_redis.outbox``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Protocol, runtime_checkable

from bifrost_async.core.jobs import Job

#: Builds the outbox document for a job that has just ended, or ``None`` when it needs no delivery.
EntryFor = Callable[[Job], "str | None"]


@runtime_checkable
class WebhookOutbox(Protocol):
    """The store capability behind durable webhook deliveries (methods may raise
    :class:`~bifrost_async.core.store.StoreUnavailable`)."""

    #: Seconds an entry may go without a heartbeat from its reader before another reader takes
    #: it over (its reader is presumed dead).
    outbox_claim_idle: float

    def outbox_attach(self, entry_for: EntryFor) -> None:
        """From now on, append ``entry_for(job)`` (when not ``None``) to the outbox atomically with
        every terminal write of a job that lands."""

    async def outbox_add(self, document: str) -> None:
        """Append an entry now (a redelivery asked for through the management API)."""

    async def outbox_read(self, consumer: str, count: int, block: float) -> list[tuple[str, str]]:
        """Up to ``count`` entries for ``consumer`` to attempt, as ``(entry id, document)``: due
        retries, entries abandoned by a silent reader, new entries; waits up to ``block`` seconds
        when there are none."""

    async def outbox_done(self, consumer: str, entry_id: str) -> bool:
        """Remove the entry for good; ``False`` (nothing done) if ``consumer`` no longer holds it."""

    async def outbox_retry(self, consumer: str, entry_id: str, document: str, due: float) -> bool:
        """Replace the entry by ``document``, to be read again from epoch time ``due`` on, in one
        atomic step; ``False`` (nothing done) if ``consumer`` no longer holds it."""

    async def outbox_touch(self, consumer: str, entry_ids: Sequence[str]) -> None:
        """Heartbeat: ``consumer`` still works on these entries (reset their idle time)."""


def webhook_outbox(store: object) -> WebhookOutbox | None:
    """``store`` as :class:`WebhookOutbox`, or ``None`` if it lacks the capability."""
    return store if isinstance(store, WebhookOutbox) else None
