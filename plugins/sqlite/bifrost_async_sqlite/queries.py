"""The store's transactions, as plain functions of a ``sqlite3`` connection (run on its thread).

Every write is one ``BEGIN IMMEDIATE`` transaction: it takes the database's write lock first, so
what it reads (the stored status, the counts, a claim) cannot change before it writes. That makes
compare-and-set, the bound and the per-owner share, and idempotency claims atomic across every
process on the file. Expiry is judged by the caller's clock (``now``), never SQLite's: a job is
live while ``expires_at IS NULL OR expires_at > now``.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

from bifrost_async.jobs import Job

LIVE = "(expires_at IS NULL OR expires_at > :now)"


@contextmanager
def write(conn: sqlite3.Connection) -> Iterator[None]:
    """One write transaction: committed if the block ends, rolled back if it raises."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield
    except BaseException:
        if conn.in_transaction:  # SQLite rolls back by itself on some errors (disk full, I/O)
            conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")


def _columns(job: Job) -> dict[str, object]:
    return {
        "id": job.id,
        "owner": job.owner,
        "request_type": job.request_type,
        "status": job.status.value,
        "created_at": job.created_at,
        "expires_at": job.expires_at,
        "lease_expires_at": None if job.status.terminal else job.lease_expires_at,
        "claim": job.idempotency_claim,
        "record": job.to_record_json(),
    }


def same_record(stored: str, record: str) -> bool:
    """Whether a stored record is the very record being written (a repeated write). A repeat
    serialises the same job, so the texts are equal; parsing both (only when their lengths
    agree) covers a writer whose JSON orders keys differently, without parsing a large result on
    every ordinary write."""
    if stored == record:
        return True
    return len(stored) == len(record) and json.loads(stored) == json.loads(record)


def create(conn: sqlite3.Connection, job: Job, now: float, max_jobs: int, max_owner_jobs: int) -> str:
    """Insert ``job``: ``"created"``, ``"same"`` (this record is stored already), ``"exists"``
    (another record has its id), ``"full"`` or ``"share"`` (a bound is reached; nothing written)."""
    values = _columns(job)
    with write(conn):
        row = conn.execute("SELECT record FROM jobs WHERE id = ?", (job.id,)).fetchone()
        if row is not None:
            return "same" if same_record(row[0], str(values["record"])) else "exists"
        # rows counted by triggers: expired rows count until purged, so purge before refusing
        if max_jobs and _count(conn) >= max_jobs:
            conn.execute("DELETE FROM jobs WHERE expires_at <= ?", (now,))
            if _count(conn) >= max_jobs:
                return "full"
        if max_owner_jobs:
            held = conn.execute(
                f"SELECT count(*) FROM (SELECT 1 FROM jobs WHERE owner = :owner AND {LIVE} LIMIT :share)",
                {"owner": job.owner, "now": now, "share": max_owner_jobs},
            ).fetchone()[0]
            if held >= max_owner_jobs:
                return "share"
        conn.execute(
            "INSERT INTO jobs (id, owner, request_type, status, created_at, expires_at, lease_expires_at,"
            " claim, record) VALUES (:id, :owner, :request_type, :status, :created_at, :expires_at,"
            " :lease_expires_at, :claim, :record)",
            values,
        )
        if job.idempotency_claim:  # the claim now lives as long as the job
            conn.execute(
                "UPDATE claims SET lapses_at = NULL WHERE claim = ? AND job_id = ?",
                (job.idempotency_claim, job.id),
            )
    return "created"


def _count(conn: sqlite3.Connection) -> int:
    return int(conn.execute("SELECT n FROM counts WHERE name = 'jobs'").fetchone()[0])


def update(conn: sqlite3.Connection, job: Job, allowed: Sequence[str], now: float) -> bool:
    """Compare-and-set: replace the live job if its stored status is in ``allowed``; a live
    stored record equal to ``job`` is success. A terminal write also logs a wake-up event."""
    values = _columns(job)
    with write(conn):
        row = conn.execute(
            f"SELECT status, record FROM jobs WHERE id = :id AND {LIVE}", {"id": job.id, "now": now}
        ).fetchone()
        if row is None:
            return False
        if same_record(row[1], str(values["record"])):
            return True
        if row[0] not in allowed:
            return False
        conn.execute(
            "UPDATE jobs SET status = :status, expires_at = :expires_at,"
            " lease_expires_at = :lease_expires_at, record = :record WHERE id = :id",
            values,
        )
        if job.status.terminal:
            conn.execute("INSERT INTO events (job_id) VALUES (?)", (job.id,))
    return True


def delete(conn: sqlite3.Connection, job_id: str, now: float) -> bool:
    """Remove the live job (its claim goes with it, by trigger) and log a wake-up event."""
    with write(conn):
        gone = conn.execute(
            f"DELETE FROM jobs WHERE id = :id AND {LIVE}", {"id": job_id, "now": now}
        ).rowcount
        if gone:
            conn.execute("INSERT INTO events (job_id) VALUES (?)", (job_id,))
    return bool(gone)


def get(conn: sqlite3.Connection, job_id: str, now: float) -> str | None:
    """The live job's record."""
    row = conn.execute(
        f"SELECT record FROM jobs WHERE id = :id AND {LIVE}", {"id": job_id, "now": now}
    ).fetchone()
    return None if row is None else str(row[0])


def owner_jobs(conn: sqlite3.Connection, owner: str, now: float) -> int:
    """Live jobs of ``owner``, exactly."""
    query = f"SELECT count(*) FROM jobs WHERE owner = :owner AND {LIVE}"
    return int(conn.execute(query, {"owner": owner, "now": now}).fetchone()[0])


def _live_claim(conn: sqlite3.Connection, claim: str, now: float) -> tuple[str, str] | None:
    row = conn.execute(
        "SELECT job_id, fingerprint, lapses_at FROM claims WHERE claim = ?", (claim,)
    ).fetchone()
    if row is None:
        return None
    job_id, fingerprint, lapses_at = row
    if lapses_at is not None and now < lapses_at:
        return job_id, fingerprint
    job_live = conn.execute(
        f"SELECT 1 FROM jobs WHERE id = :id AND {LIVE}", {"id": job_id, "now": now}
    ).fetchone()
    return (job_id, fingerprint) if job_live else None


def claim(
    conn: sqlite3.Connection, claim: str, fingerprint: str, job_id: str, lapses_at: float, now: float
) -> tuple[str | None, bool]:
    """``JobStore.claim_idempotency_key`` in one transaction."""
    with write(conn):
        held = conn.execute("SELECT job_id FROM claims WHERE claim = ?", (claim,)).fetchone()
        if held is not None and held[0] == job_id:
            return None, True  # our own claim, seen again by a retry
        live = _live_claim(conn, claim, now)
        if live is not None:
            return live[0], live[1] == fingerprint
        conn.execute(
            "INSERT OR REPLACE INTO claims (claim, job_id, fingerprint, lapses_at) VALUES (?, ?, ?, ?)",
            (claim, job_id, fingerprint, lapses_at),
        )
    return None, True


def find_claim(conn: sqlite3.Connection, claim: str, now: float) -> tuple[str, str] | None:
    """The live claim as ``(job id, fingerprint)``."""
    return _live_claim(conn, claim, now)


def release_claim(conn: sqlite3.Connection, claim: str, job_id: str, now: float) -> None:
    """Drop ``job_id``'s claim if that job does not exist."""
    with write(conn):
        conn.execute(
            f"DELETE FROM claims WHERE claim = :claim AND job_id = :id"
            f" AND NOT EXISTS (SELECT 1 FROM jobs WHERE id = :id AND {LIVE})",
            {"claim": claim, "id": job_id, "now": now},
        )


def list_jobs(
    conn: sqlite3.Connection,
    owner: str,
    request_type: str,
    status: str | None,
    after: tuple[float, str] | None,
    limit: int,
    now: float,
) -> list[str]:
    """Up to ``limit`` records of the owner's live jobs of one type, newest first, after a position."""
    query = f"SELECT record FROM jobs WHERE owner = :owner AND request_type = :type AND {LIVE}"
    params: dict[str, object] = {"owner": owner, "type": request_type, "now": now, "limit": limit}
    if status is not None:
        query += " AND status = :status"
        params["status"] = status
    if after is not None:
        query += " AND (created_at, id) < (:created, :after_id)"
        params["created"], params["after_id"] = after
    query += " ORDER BY created_at DESC, id DESC LIMIT :limit"
    return [str(row[0]) for row in conn.execute(query, params)]
