"""bifrost-async-redis: a Redis job store for bifrost-async.

Installed, it registers the store ``redis`` through the ``bifrost_async`` entry-point group, so
``AsyncJobsMiddleware(app, store="redis", store_options={"url": "redis://host:6379/0"})`` or
``bifrost-async serve --store redis --store-option url=redis://host:6379/0`` shares jobs between
every process pointed at the same Redis. It uses only the public plugin hooks and store contract.
"""

from __future__ import annotations

from typing import Any

import structlog
from bifrost_async import hookimpl
from bifrost_async.store import RegisterStore, StoreContext

from .options import RedisStoreOptions
from .store import RedisJobStore

__version__ = "0.1.0"

log = structlog.get_logger(__name__)


def redis_store(context: StoreContext) -> RedisJobStore:
    """Factory for the ``redis`` store: options from ``context.options``; the bound is the
    ``max_jobs`` store option if given, else the middleware's ``max_jobs`` (0: no bound)."""
    options = RedisStoreOptions.from_mapping(context.options)
    max_jobs = context.max_jobs if options.max_jobs is None else options.max_jobs
    return RedisJobStore(
        options, clock=context.clock, max_jobs=max_jobs, max_owner_jobs=context.max_owner_jobs
    )


@hookimpl
def register_stores(register: RegisterStore) -> None:
    """Register the store ``redis`` (the ``register_stores`` hook)."""
    register("redis", redis_store, shared=True)


@hookimpl
def async_jobs_startup(middleware: Any) -> None:
    """Warn (``redis_store.owner_secret_missing``, at every start) when the middleware has no
    ``owner_secret``: a shared store is readable by more people than one process's memory. (The
    sweep reaches the middleware through the public ``RedisJobStore.attach``, not through here.)"""
    store = getattr(middleware, "store", None)
    if isinstance(store, RedisJobStore) and not getattr(
        getattr(middleware, "config", None), "owner_secret", None
    ):
        # Without a secret an owner digest is a plain SHA-256 of a known prefix and the credential:
        # anyone who can read this shared Redis can confirm a guessed credential offline.
        log.warning(
            "redis_store.owner_secret_missing",
            risk="owner digests in Redis are unkeyed SHA-256; a reader of Redis can test guessed credentials",
            fix="set owner_secret (BIFROST_ASYNC_OWNER_SECRET), the same on every process",
        )


__all__ = ["RedisJobStore", "RedisStoreOptions", "redis_store"]
