"""SQLite connections (each on its thread, plus quick reads on the loop), the schema, and errors.

Why the standard library's ``sqlite3`` on one thread, not ``aiosqlite``: a store method runs as
*one* function on the connection's thread (``BEGIN IMMEDIATE`` ... ``COMMIT`` included), so each
call costs one hop between the event loop and the thread, and a write transaction never spans an
``await`` (other processes wait on our write lock only for the statements themselves).
``aiosqlite`` hops once per statement; measured on this machine (2 cores, WAL, a 4-statement
create): 6,000-8,000 write transactions/s and ~12,000 reads/s here against ~2,400 and ~3,200 with
aiosqlite. It is also one dependency less. :class:`QuickReader` saves even that hop for short
reads that need no wait.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import os
import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import structlog
from bifrost_async.store import StoreFull, StoreUnavailable

log = structlog.get_logger(__name__)

_T = TypeVar("_T")

#: The schema version this code writes (kept in ``PRAGMA user_version``).
SCHEMA_VERSION = 1

#: Every statement of the schema; each is idempotent, so every process may run them at start.
SCHEMA = (
    # One row per job. ``record`` is the whole job (Job.to_record_json); the other columns are
    # copies of its fields that SQL filters and sorts by. ``expires_at`` is NULL while the job is
    # unfinished (it never expires); ``lease_expires_at`` is NULL once it is terminal.
    """CREATE TABLE IF NOT EXISTS jobs (
        id TEXT PRIMARY KEY,
        owner TEXT NOT NULL,
        request_type TEXT NOT NULL,
        status TEXT NOT NULL,
        created_at REAL NOT NULL,
        expires_at REAL,
        lease_expires_at REAL,
        claim TEXT,
        record TEXT NOT NULL
    )""",
    "CREATE INDEX IF NOT EXISTS jobs_expiry ON jobs (expires_at) WHERE expires_at IS NOT NULL",
    "CREATE INDEX IF NOT EXISTS jobs_lease ON jobs (lease_expires_at) WHERE lease_expires_at IS NOT NULL",
    "CREATE INDEX IF NOT EXISTS jobs_listing ON jobs (owner, request_type, created_at DESC, id DESC)",
    "CREATE INDEX IF NOT EXISTS jobs_owner ON jobs (owner, expires_at)",
    # Idempotency claims: ``lapses_at`` is set while the claiming job is not created yet, NULL
    # once it is (then the claim lives exactly as long as the job).
    """CREATE TABLE IF NOT EXISTS claims (
        claim TEXT PRIMARY KEY,
        job_id TEXT NOT NULL,
        fingerprint TEXT NOT NULL,
        lapses_at REAL
    )""",
    # Rows in ``jobs``, kept by triggers, so the bound is checked without counting the table.
    "CREATE TABLE IF NOT EXISTS counts (name TEXT PRIMARY KEY, n INTEGER NOT NULL)",
    "INSERT OR IGNORE INTO counts (name, n) VALUES ('jobs', (SELECT count(*) FROM jobs))",
    """CREATE TRIGGER IF NOT EXISTS jobs_added AFTER INSERT ON jobs BEGIN
        UPDATE counts SET n = n + 1 WHERE name = 'jobs';
    END""",
    # A job that goes (deleted, or purged once expired) takes its idempotency claim with it.
    """CREATE TRIGGER IF NOT EXISTS jobs_removed AFTER DELETE ON jobs BEGIN
        UPDATE counts SET n = n - 1 WHERE name = 'jobs';
        DELETE FROM claims WHERE claim = old.claim AND job_id = old.id;
    END""",
    # The wake-up log: one row per terminal update and per delete, written in the same
    # transaction, tailed by every process (events.py). AUTOINCREMENT: ids never go back, even
    # after the newest rows were trimmed, so ``id > last_seen`` never misses or repeats a row.
    """CREATE TABLE IF NOT EXISTS events (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        job_id TEXT NOT NULL
    )""",
    # Managed webhook endpoints and their delivery history (webhooks.py).
    """CREATE TABLE IF NOT EXISTS webhook_endpoints (
        id TEXT PRIMARY KEY,
        name TEXT NOT NULL UNIQUE,
        document TEXT NOT NULL
    )""",
    """CREATE TABLE IF NOT EXISTS webhook_deliveries (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        id TEXT NOT NULL UNIQUE,
        endpoint_id TEXT NOT NULL,
        document TEXT NOT NULL
    )""",
    "CREATE INDEX IF NOT EXISTS webhook_history ON webhook_deliveries (endpoint_id, seq DESC)",
    """CREATE TABLE IF NOT EXISTS webhook_counters (
        endpoint_id TEXT PRIMARY KEY,
        successes INTEGER NOT NULL DEFAULT 0,
        failures INTEGER NOT NULL DEFAULT 0,
        consecutive_failures INTEGER NOT NULL DEFAULT 0,
        last_status_code INTEGER,
        last_success_at REAL,
        last_failure_at REAL
    )""",
    f"PRAGMA user_version = {SCHEMA_VERSION}",
)


def translate(exc: sqlite3.Error) -> Exception:
    """A SQLite failure as the core's store error: a full disk is :class:`StoreFull`; a locked,
    unreadable, corrupt or vanished database is :class:`StoreUnavailable` (both 503), never a
    500. Programming errors (a bad statement) are not translated."""
    name = getattr(exc, "sqlite_errorname", "")
    if name == "SQLITE_FULL":
        return StoreFull("the SQLite job store's disk is full")
    return StoreUnavailable(f"the SQLite job store is unavailable ({name or type(exc).__name__}: {exc})")


#: SQLite failures that mean "not now / not readable" (locked, I/O error, not a database, disk
#: full, no such table in a replaced file) rather than a bug of ours.
UNAVAILABLE = (sqlite3.OperationalError, sqlite3.DatabaseError)
#: Subclasses of those that are bugs (a bad binding, a broken constraint): never hidden as a 503.
BUGS = (sqlite3.ProgrammingError, sqlite3.IntegrityError, sqlite3.InterfaceError)


class Connection:
    """A ``sqlite3`` connection used only from its own thread; :meth:`run` calls a function
    with it there. The connection opens (and sets its pragmas) on first use, and again after a
    failure to open, so a database that was locked or unreadable at start recovers by itself."""

    def __init__(
        self, path: Path, *, busy_timeout: float, synchronous: str, name: str, schema: bool = False
    ) -> None:
        self.path = path
        self.busy_timeout = busy_timeout
        self.synchronous = synchronous
        self.schema = schema
        self._conn: sqlite3.Connection | None = None
        self._executor = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix=f"bifrost-sqlite-{name}")

    @property
    def opened(self) -> bool:
        """Whether the connection is open (the file exists, in WAL mode, with its schema)."""
        return self._conn is not None

    async def run(self, work: Callable[[sqlite3.Connection], _T]) -> _T:
        """``work(connection)`` on the connection's thread; SQLite failures as store errors."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, self._call, work)

    def _call(self, work: Callable[[sqlite3.Connection], _T]) -> _T:
        try:
            return work(self._open())
        except BUGS:
            raise
        except UNAVAILABLE as exc:
            if self._conn is not None and self._conn.in_transaction:
                try:
                    self._conn.rollback()
                except sqlite3.Error:
                    self._close_now()  # a connection we cannot roll back is opened afresh
            translated = translate(exc)
            log.warning("sqlite_store.unavailable", error=str(exc)[:200], path=str(self.path))
            raise translated from None

    def _open(self) -> sqlite3.Connection:
        if self._conn is not None:
            return self._conn
        created = not self.path.exists()
        # isolation_level=None: no implicit transactions; every write says BEGIN IMMEDIATE itself.
        conn = sqlite3.connect(
            self.path, isolation_level=None, check_same_thread=False, timeout=self.busy_timeout
        )
        try:
            conn.execute(f"PRAGMA busy_timeout = {int(self.busy_timeout * 1000)}")
            mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
            if str(mode).lower() != "wal":
                raise sqlite3.OperationalError(
                    f"cannot switch {self.path} to WAL mode (journal_mode is {mode})"
                )
            conn.execute(f"PRAGMA synchronous = {self.synchronous.upper()}")
            if created:
                # results and owner digests are in the file: only the service's user reads it
                # (SQLite gives the -wal and -shm files the database file's mode)
                os.chmod(self.path, 0o600)
            if self.schema:
                create_schema(conn)
        except BaseException:
            conn.close()
            raise
        self._conn = conn
        return conn

    def _close_now(self) -> None:
        if self._conn is not None:
            try:
                self._conn.close()
            finally:
                self._conn = None

    async def close(self) -> None:
        """Close the connection on its thread, then stop the thread."""
        loop = asyncio.get_running_loop()
        try:
            await loop.run_in_executor(self._executor, self._close_now)
        finally:
            self._executor.shutdown(wait=False)


def create_schema(conn: sqlite3.Connection) -> None:
    """Create the tables, indexes and triggers if missing, in one write transaction, so processes
    starting together never see half a schema."""
    version = conn.execute("PRAGMA user_version").fetchone()[0]
    if version > SCHEMA_VERSION:
        raise sqlite3.OperationalError(
            f"the database was written by a newer bifrost-async-sqlite (schema {version} > {SCHEMA_VERSION})"
        )
    if version == SCHEMA_VERSION:
        return
    conn.execute("BEGIN IMMEDIATE")
    try:
        for statement in SCHEMA:
            conn.execute(statement)
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise


#: SQLite's answers that mean "would have to wait for a lock": the quick path leaves such a read
#: to the thread, whose connection waits up to ``busy_timeout``.
_WAITING = ("SQLITE_BUSY", "SQLITE_LOCKED")


class QuickReader:
    """Short reads (a job by id, a claim, one page) on the event loop's own thread, with a
    connection that never waits (``busy_timeout`` 0, ``query_only``); anything else goes to
    ``fallback``, the threaded reader.

    Why: in WAL mode a read never waits for the writer, and a read by primary key costs ~6 µs here,
    while handing it to a thread and back costs ~140 µs on this (loaded, 2-core) machine, most of
    a poll's store time. The rare read that would wait (SQLite busy recovering the WAL index after
    a crash, a checkpoint restarting the log) fails at once on this connection and is retried on
    the thread; any other failure also goes to the thread, which reports it (503) and reopens.
    """

    def __init__(self, fallback: Connection) -> None:
        self.fallback = fallback
        self._conn: sqlite3.Connection | None = None

    async def run(self, work: Callable[[sqlite3.Connection], _T]) -> _T:
        """``work(connection)`` here if it needs no wait, else on the fallback's thread."""
        conn = self._conn or self._open()
        if conn is not None:
            try:
                return work(conn)
            except BUGS:
                raise
            except sqlite3.Error as exc:
                if getattr(exc, "sqlite_errorname", "").startswith(_WAITING):
                    pass  # would wait: the thread's connection waits for it
                else:
                    self.close()  # the file may be replaced or unreadable: reopen after the thread's look
        return await self.fallback.run(work)

    def _open(self) -> sqlite3.Connection | None:
        """A connection once the threaded reader has opened the file (so it exists, is in WAL
        mode and has its schema); ``None`` before, or if this one cannot open now."""
        if not self.fallback.opened:
            return None
        try:
            conn = sqlite3.connect(
                self.fallback.path, isolation_level=None, timeout=0, check_same_thread=False
            )
            conn.execute("PRAGMA busy_timeout = 0")
            conn.execute("PRAGMA query_only = 1")
        except sqlite3.Error:
            return None
        self._conn = conn
        return conn

    @property
    def opened(self) -> bool:
        """Whether the quick connection is open (reads then skip the thread)."""
        return self._conn is not None

    def close(self) -> None:
        """Close the quick connection; the next read opens it again."""
        if self._conn is not None:
            conn, self._conn = self._conn, None
            conn.close()
