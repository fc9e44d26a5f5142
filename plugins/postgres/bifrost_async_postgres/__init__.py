"""bifrost-async-postgres: a PostgreSQL job store for bifrost-async.

Installed, it registers the store ``postgres`` through the ``bifrost_async`` entry-point group,
so ``bifrost-async serve --store postgres --store-option url=postgresql://USER@HOST:PORT/DB`` (or
``AsyncJobsMiddleware(app, store="postgres", store_options={"url": ...})``) shares jobs, bounds
and wake-ups between every process pointed at the same database and schema. It uses only the
public plugin hooks and store contract.
"""

from __future__ import annotations

from bifrost_async import hookimpl
from bifrost_async.store import RegisterStore, StoreContext

from .options import PostgresStoreOptions
from .store import PostgresJobStore

__version__ = "0.1.0"


def postgres_store(context: StoreContext) -> PostgresJobStore:
    """Factory for the ``postgres`` store (no I/O: it connects in ``start``). Options (see
    ``PostgresStoreOptions``): ``url`` (``postgresql://user@host:port/db``; default
    ``$BIFROST_ASYNC_POSTGRES_URL`` or postgresql://postgres@127.0.0.1:5432/postgres), ``schema``
    (default bifrost_async), ``pool_size``, ``connect_timeout``, ``command_timeout``, ``max_jobs``
    (default: the middleware's; 0: no bound), ``sweep_interval`` and ``purge_interval`` (0: off),
    ``purge_batch`` and ``migrate`` (false: refuse an unmigrated schema)."""
    options = PostgresStoreOptions.from_mapping(context.options)
    max_jobs = context.max_jobs if options.max_jobs is None else options.max_jobs
    return PostgresJobStore(
        options, clock=context.clock, max_jobs=max_jobs, max_owner_jobs=context.max_owner_jobs
    )


@hookimpl
def register_stores(register: RegisterStore) -> None:
    """Register the store ``postgres`` (the ``register_stores`` hook), shared: every process on
    the same database and schema sees the same jobs, bounds and wake-ups (so the core also warns,
    ``async_jobs.owner_secret_missing``, when such a process has no ``owner_secret``)."""
    register("postgres", postgres_store, shared=True)


__all__ = ["PostgresJobStore", "PostgresStoreOptions", "postgres_store"]
