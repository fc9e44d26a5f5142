"""bifrost-async-postgres: a PostgreSQL job store for bifrost-async.

Installed, it registers the store ``postgres`` through the ``bifrost_async`` entry-point group,
so ``bifrost-async serve --store postgres --store-option url=postgresql://USER@HOST:PORT/DB`` (or
``AsyncJobsMiddleware(app, store="postgres", store_options={"url": ...})``) shares jobs, bounds
and wake-ups between every process pointed at the same database and schema. It uses only the
public plugin hooks and store contract.
"""

from __future__ import annotations

from typing import Any

import structlog
from bifrost_async import hookimpl
from bifrost_async.store import RegisterStore, StoreContext

from .options import PostgresStoreOptions
from .store import PostgresJobStore

__version__ = "0.1.0"

log = structlog.get_logger(__name__)


def postgres_store(context: StoreContext) -> PostgresJobStore:
    """Factory for the ``postgres`` store: options from ``context.options`` (no I/O here: the
    store connects in ``start``); the bound is the ``max_jobs`` store option if given, else the
    middleware's ``max_jobs`` (0: no bound)."""
    options = PostgresStoreOptions.from_mapping(context.options)
    max_jobs = context.max_jobs if options.max_jobs is None else options.max_jobs
    return PostgresJobStore(
        options, clock=context.clock, max_jobs=max_jobs, max_owner_jobs=context.max_owner_jobs
    )


@hookimpl
def register_stores(register: RegisterStore) -> None:
    """Register the store ``postgres`` (the ``register_stores`` hook), shared across processes."""
    register("postgres", postgres_store, shared=True)


@hookimpl
def async_jobs_startup(middleware: Any) -> None:
    """Warn (``postgres_store.owner_secret_missing``) when the middleware has no
    ``owner_secret``: a shared database is readable by more people than one process's memory."""
    store = getattr(middleware, "store", None)
    if isinstance(store, PostgresJobStore) and not getattr(
        getattr(middleware, "config", None), "owner_secret", None
    ):
        # unkeyed owner digests in a shared database let its readers test guessed credentials
        log.warning(
            "postgres_store.owner_secret_missing",
            risk="owner digests in PostgreSQL are unkeyed SHA-256; "
            "a reader of the database can test guessed credentials",
            fix="set owner_secret (BIFROST_ASYNC_OWNER_SECRET), the same on every process",
        )


__all__ = ["PostgresJobStore", "PostgresStoreOptions", "postgres_store"]
