"""Job-ended notifications across processes: one pub/sub subscription per store.

Every terminal update and every delete publishes the job's id on ``<prefix>ended`` (inside the
same Lua script as the write, so no write goes unannounced). Each process subscribes once and
wakes its local waiters: long-polls, and the runner's watch on every job it runs, which is how a
job cancelled on another process stops here. Pub/sub delivers at most once, so after every
(re)subscription all waiters are woken to re-read their job: a notification missed while Redis
was unreachable costs a re-read, never a wait to the deadline.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import TYPE_CHECKING

import structlog
from bifrost_async.store import Waiters

if TYPE_CHECKING:
    from .store import RedisJobStore

log = structlog.get_logger(__name__)

#: Seconds one read on the subscription waits for a message before it checks the connection.
_READ_WAIT = 1.0
#: Seconds between resubscription attempts while Redis is unreachable.
_RETRY = 0.5


async def listen(store: RedisJobStore, waiters: Waiters, subscribed: asyncio.Event) -> None:
    """Subscribe to the store's channel and wake ``waiters`` per message (through
    ``store.notified``, which holds back the wake-up of a job this process is ending itself until
    its write's reply), until cancelled;
    reconnect after any failure. ``subscribed`` is set once the first subscription is active.
    A lost subscription is logged once (a warning), and once more when it is back (an info), not
    at every reconnection attempt of an outage."""
    lost = False
    while True:
        pubsub = store.redis.pubsub(ignore_subscribe_messages=True)
        try:
            await pubsub.subscribe(store.channel)
            waiters.wake_all()  # anything published while we were not subscribed is re-read
            subscribed.set()
            if lost:
                log.info("redis_store.subscription_restored")
                lost = False
            while True:
                message = await pubsub.get_message(timeout=_READ_WAIT)
                if message is not None and message.get("type") == "message":
                    data = message["data"]
                    store.notified(data.decode() if isinstance(data, bytes) else str(data))
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # any failure: reconnect, never stop listening
            if not lost:
                log.warning("redis_store.subscription_lost", error_type=type(exc).__name__)
                lost = True
            await asyncio.sleep(_RETRY)
        finally:
            with contextlib.suppress(Exception):  # the connection may be dead already
                await pubsub.aclose()  # type: ignore[no-untyped-call]
