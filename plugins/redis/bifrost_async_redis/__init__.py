"""bifrost-async-redis: a Redis job store for bifrost-async.

Installed, it registers the store ``redis`` through the ``bifrost_async`` entry-point group, so
``AsyncJobsMiddleware(app, store="redis", store_options={"url": "redis://host:6379/0"})`` or
``bifrost-async serve --store redis --store-option url=redis://host:6379/0`` shares jobs between
every process pointed at the same Redis. It uses only the public plugin hooks and store contract.
"""

from __future__ import annotations

import os

from bifrost_async import hookimpl
from bifrost_async.queue import ENCRYPTION_KEY_ENV, Keyring, QueueContext, RegisterQueue
from bifrost_async.store import RegisterStore, StoreContext

from .options import RedisStoreOptions
from .queue import RedisWorkQueue
from .store import RedisJobStore

__version__ = "0.1.0"


def redis_store(context: StoreContext) -> RedisJobStore:
    """Factory for the ``redis`` store. Options (see ``RedisStoreOptions``): ``url``
    (``redis://``, ``rediss://`` or ``unix://``; default ``$BIFROST_ASYNC_REDIS_URL`` or
    redis://127.0.0.1:6379/0), ``prefix``, ``max_connections``, ``socket_timeout``,
    ``socket_connect_timeout``, ``retries``, ``max_jobs`` (default: the middleware's; 0: no bound),
    ``sweep_interval`` (0: no sweep) and ``webhook_claim_idle`` (seconds before a webhook delivery
    whose process went silent mid-attempt is taken over by another: the durable outbox)."""
    options = RedisStoreOptions.from_mapping(context.options)
    max_jobs = context.max_jobs if options.max_jobs is None else options.max_jobs
    return RedisJobStore(
        options, clock=context.clock, max_jobs=max_jobs, max_owner_jobs=context.max_owner_jobs
    )


@hookimpl
def register_stores(register: RegisterStore) -> None:
    """Register the store ``redis`` (the ``register_stores`` hook), shared: every process on the
    same Redis and prefix sees the same jobs, bounds and wake-ups (so the core also warns,
    ``async_jobs.owner_secret_missing``, when such a process has no ``owner_secret``)."""
    register("redis", redis_store, shared=True)


def redis_queue(context: QueueContext) -> RedisWorkQueue | None:
    """Factory of the ``redis`` queue: a Redis Stream on the ``redis`` store's own Redis, prefix
    and connection pool (so it needs ``store="redis"``), with the replay headers sealed by the
    operator's keys (``encryption_key``, else ``$BIFROST_ASYNC_ENCRYPTION_KEY``), without which
    it refuses to start. Called with no store (options are being checked): checks the key only."""
    raw = context.config.encryption_key
    keyring = Keyring.parse(raw) if raw else Keyring.from_environ()
    if keyring is None:
        raise ValueError(
            f"the redis queue stores replay headers sealed: set {ENCRYPTION_KEY_ENV} "
            "(make a key with `bifrost-async keygen`)"
        )
    directory = context.config.request_dir
    if directory and not os.path.isdir(directory):
        raise ValueError(f"the request directory {directory!r} does not exist")
    if context.store is None:
        return None
    if not isinstance(context.store, RedisJobStore):
        raise ValueError("the redis queue needs the redis store (store 'redis')")
    return RedisWorkQueue(context, keyring=keyring, store=context.store)


@hookimpl
def register_queues(register: RegisterQueue) -> None:
    """Register the queue ``redis`` (the ``register_queues`` hook), shared: every instance on the
    same Redis and prefix takes work from one stream (see :mod:`bifrost_async_redis.queue`)."""
    register("redis", redis_queue, shared=True)


__all__ = ["RedisJobStore", "RedisStoreOptions", "RedisWorkQueue", "redis_queue", "redis_store"]
