"""The Redis store's :class:`~bifrost_async.store.WebhookOutbox`: durable webhook deliveries on a
Redis stream with a consumer group, shared by every process on the same server and prefix.

Keys (under the store's prefix): ``wh:outbox`` the stream of deliveries waiting for an attempt
(one field, ``data``: the document the webhooks plugin rendered: ids, event, attempt number; no
credential, no body), read through the consumer group ``deliverers``; ``wh:outbox:due`` a sorted
set of deliveries waiting out their back-off, scored by the epoch time their next attempt is due.

* A job's terminal write and its delivery's ``XADD`` are one Lua script (:data:`UPDATE_AND_ENQUEUE`,
  the store's ``UPDATE`` with the ``XADD`` after a write that landed): no crash can separate them.
* Each process reads with ``XREADGROUP`` as its own consumer. Before reading, due back-offs move
  from the sorted set to the stream (one script: ``ZREM`` + ``XADD``, so a due entry is moved
  once), and ``XAUTOCLAIM`` takes over entries idle longer than ``outbox_claim_idle`` (their
  reader died; a live reader resets the idle time of what it holds with ``XCLAIM ... JUSTID``).
* After an attempt, one script settles the entry, only if the caller still holds it (``XPENDING``
  for that consumer): ``XACK`` + ``XDEL`` when done, plus ``ZADD`` of the next attempt's document
  when a retry is due later. The attempt number travels in the document, so ``max_retries``
  holds whoever makes the next attempt.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import redis.asyncio as aioredis
import structlog
from bifrost_async.store import EntryFor, StoreUnavailable
from redis.exceptions import ResponseError

from . import scripts
from .guard import guard

log = structlog.get_logger(__name__)

#: The consumer group every process's deliverer reads through.
GROUP = "deliverers"
#: Takeovers of one entry (its reader went silent mid-attempt) before it is given up, logged as
#: ``webhook.outbox_entry_abandoned``: an attempt that kills its process must not kill them all.
MAX_TAKEOVERS = 5

_END = "return 1\n"
if not scripts.UPDATE.endswith(_END):  # pragma: no cover - guards the derivation below
    raise RuntimeError("scripts.UPDATE must end with 'return 1': the outbox script extends it")

#: The store's UPDATE, plus the delivery's ``XADD`` once the write has landed. KEYS: UPDATE's,
#: then the outbox stream (last). ARGV: UPDATE's, then the document (last; UPDATE's loop over
#: the expected statuses never matches a JSON document).
UPDATE_AND_ENQUEUE = (
    scripts.UPDATE[: -len(_END)] + "redis.call('XADD', KEYS[#KEYS], '*', 'data', ARGV[#ARGV])\n" + _END
)

#: KEYS: stream, due set. ARGV: now, most to move. Moves due back-offs into the stream.
_PROMOTE = """
local due = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', ARGV[1], 'LIMIT', 0, tonumber(ARGV[2]))
for _, doc in ipairs(due) do
  redis.call('ZREM', KEYS[2], doc)
  redis.call('XADD', KEYS[1], '*', 'data', doc)
end
return #due
"""
#: KEYS: stream, due set. ARGV: group, consumer, entry id[, due time, next document].
#: Settles an entry the consumer still holds: removed, and the next attempt scheduled if given.
_SETTLE = """
local held = redis.call('XPENDING', KEYS[1], ARGV[1], ARGV[3], ARGV[3], 1, ARGV[2])
if #held == 0 then return 0 end
if ARGV[5] then redis.call('ZADD', KEYS[2], ARGV[4], ARGV[5]) end
redis.call('XACK', KEYS[1], ARGV[1], ARGV[3])
redis.call('XDEL', KEYS[1], ARGV[3])
return 1
"""


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


class RedisWebhookOutbox:
    """Mixed into :class:`~bifrost_async_redis.store.RedisJobStore` (which provides ``redis``,
    ``options`` and ``clock``)."""

    options: Any
    #: Set by :meth:`outbox_attach` (the webhooks plugin at startup); ``None``: no outbox in use.
    outbox_entry_for: EntryFor | None = None
    _group_ready: bool = False

    @property
    def redis(self) -> aioredis.Redis:  # pragma: no cover - provided by the store
        raise NotImplementedError

    @property
    def outbox_claim_idle(self) -> float:
        """The ``webhook_claim_idle`` store option."""
        return float(self.options.webhook_claim_idle)

    @property
    def outbox_key(self) -> str:
        """The stream of deliveries waiting for an attempt."""
        return f"{self.options.prefix}wh:outbox"

    @property
    def outbox_due_key(self) -> str:
        """The sorted set of deliveries waiting out their back-off, by due time."""
        return f"{self.options.prefix}wh:outbox:due"

    def outbox_attach(self, entry_for: EntryFor) -> None:
        """See :meth:`bifrost_async.store.WebhookOutbox.outbox_attach`."""
        self.outbox_entry_for = entry_for

    async def _ensure_group(self) -> None:
        if self._group_ready:
            return
        with guard():
            try:
                await self.redis.xgroup_create(self.outbox_key, GROUP, id="0", mkstream=True)
            except ResponseError as exc:
                if "BUSYGROUP" not in str(exc):  # BUSYGROUP: another process made it first
                    raise
        self._group_ready = True

    async def outbox_add(self, document: str) -> None:
        """See :meth:`bifrost_async.store.WebhookOutbox.outbox_add`."""
        with guard():
            await self.redis.xadd(self.outbox_key, {"data": document})

    async def outbox_read(self, consumer: str, count: int, block: float) -> list[tuple[str, str]]:
        """See :meth:`bifrost_async.store.WebhookOutbox.outbox_read`."""
        await self._ensure_group()
        try:
            return await self._read(consumer, count, block)
        except StoreUnavailable:
            self._group_ready = False  # a flushed or restarted Redis may have lost the group
            raise

    async def _read(self, consumer: str, count: int, block: float) -> list[tuple[str, str]]:
        now = repr(time.time())  # back-off is real time, as the deliverer schedules it
        with guard():
            await self.redis.eval(_PROMOTE, 2, self.outbox_key, self.outbox_due_key, now, str(count))
            idle_ms = max(1, int(self.outbox_claim_idle * 1000))
            claimed = await self.redis.xautoclaim(
                self.outbox_key, GROUP, consumer, idle_ms, start_id="0-0", count=count
            )
        entries = await self._bounded(consumer, _entries(claimed[1]))
        if len(entries) < count:
            # never block past the socket timeout: the pool would count Redis as down
            wait_ms = max(1, int(min(block, self.options.socket_timeout / 2) * 1000))
            with guard():
                fresh: Any = await self.redis.xreadgroup(
                    GROUP, consumer, {self.outbox_key: ">"}, count=count - len(entries), block=wait_ms
                )
            for _, batch in fresh or []:
                entries.extend(_entries(batch))
        return entries

    async def _bounded(self, consumer: str, taken: list[tuple[str, str]]) -> list[tuple[str, str]]:
        """The entries just taken over, less those taken over :data:`MAX_TAKEOVERS` times already:
        an attempt that kills every process that makes it must not go round forever."""
        if not taken:
            return taken
        with guard():
            counts = {
                _text(p["message_id"]): int(p["times_delivered"])
                for p in await self.redis.xpending_range(
                    self.outbox_key, GROUP, taken[0][0], taken[-1][0], len(taken) + 100, consumer
                )
            }
        kept: list[tuple[str, str]] = []
        for entry_id, document in taken:
            if counts.get(entry_id, 0) > MAX_TAKEOVERS + 1:
                log.error("webhook.outbox_entry_abandoned", entry_id=entry_id, takeovers=MAX_TAKEOVERS)
                await self.outbox_done(consumer, entry_id)
            else:
                kept.append((entry_id, document))
        return kept

    async def outbox_done(self, consumer: str, entry_id: str) -> bool:
        """See :meth:`bifrost_async.store.WebhookOutbox.outbox_done`."""
        with guard():
            settled = await self.redis.eval(
                _SETTLE, 2, self.outbox_key, self.outbox_due_key, GROUP, consumer, entry_id
            )
        return bool(settled == 1)

    async def outbox_retry(self, consumer: str, entry_id: str, document: str, due: float) -> bool:
        """See :meth:`bifrost_async.store.WebhookOutbox.outbox_retry`."""
        args = [self.outbox_key, self.outbox_due_key, GROUP, consumer, entry_id, repr(due), document]
        with guard():
            settled = await self.redis.eval(_SETTLE, 2, *args)
        return bool(settled == 1)

    async def outbox_touch(self, consumer: str, entry_ids: Sequence[str]) -> None:
        """See :meth:`bifrost_async.store.WebhookOutbox.outbox_touch`."""
        if not entry_ids:
            return
        with guard():
            await self.redis.xclaim(self.outbox_key, GROUP, consumer, 0, list(entry_ids), justid=True)


def _entries(batch: Any) -> list[tuple[str, str]]:
    """``(id, document)`` pairs from a stream reply (entries deleted meanwhile come as ``None``)."""
    out: list[tuple[str, str]] = []
    for entry_id, fields in batch or []:
        if not fields:
            continue
        data = fields.get(b"data", fields.get("data"))
        if data is not None:
            out.append((_text(entry_id), _text(data)))
    return out
