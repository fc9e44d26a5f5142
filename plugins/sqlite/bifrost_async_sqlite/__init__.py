"""bifrost-async-sqlite: a SQLite job store for bifrost-async, shared by every process on a machine.

Installed, it registers the store ``sqlite`` through the ``bifrost_async`` entry-point group, so
``AsyncJobsMiddleware(app, store="sqlite", store_options={"path": "/var/lib/app/jobs.db"})`` or
``bifrost-async serve --store sqlite --store-option path=/var/lib/app/jobs.db`` shares jobs,
bounds, long-poll wake-ups and cancels between every process that opens the same file (for
example the workers of ``serve --workers 4``), with no server. It uses only the public plugin
hooks and store contract.
"""

from __future__ import annotations

from bifrost_async import hookimpl
from bifrost_async.store import RegisterStore, StoreContext

from .options import DEFAULT_PATH, SqliteStoreOptions
from .store import SqliteJobStore

__version__ = "0.1.0"


def sqlite_store(context: StoreContext) -> SqliteJobStore:
    """Factory for the ``sqlite`` store. Options (see ``SqliteStoreOptions``): ``path`` (the
    database file, default ``bifrost-async-jobs.db`` in the working directory; its directory must
    exist and be writable), ``busy_timeout``, ``notify_interval`` (wake-up latency across
    processes), ``sweep_interval`` (0: no sweep), ``purge_interval`` (0: no purge),
    ``synchronous`` (``normal``/``full``/``off``/``extra``) and ``max_jobs`` (default: the
    middleware's; 0: no bound). A bad option or an unusable ``path`` raises :class:`ValueError`
    in one line; the factory only looks at the file system, it opens nothing (``start()`` does).
    """
    options = SqliteStoreOptions.from_mapping(context.options)
    options.check_path()
    max_jobs = context.max_jobs if options.max_jobs is None else options.max_jobs
    return SqliteJobStore(
        options, clock=context.clock, max_jobs=max_jobs, max_owner_jobs=context.max_owner_jobs
    )


@hookimpl
def register_stores(register: RegisterStore) -> None:
    """Register the store ``sqlite`` (the ``register_stores`` hook), shared across processes."""
    register("sqlite", sqlite_store, shared=True)


__all__ = ["DEFAULT_PATH", "SqliteJobStore", "SqliteStoreOptions", "sqlite_store"]
