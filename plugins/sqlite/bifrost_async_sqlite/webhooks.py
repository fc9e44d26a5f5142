"""The SQLite store's webhook records (the core's optional ``WebhookRecords`` store capability):
managed webhook endpoints (``/api/webhooks``) and their delivery history, shared by every process
on the file.

Tables: ``webhook_endpoints`` (id, unique name, the document the core renders with secrets
already sealed), ``webhook_deliveries`` (newest :data:`HISTORY_PER_ENDPOINT` attempt records per
endpoint, ordered by an AUTOINCREMENT ``seq``) and ``webhook_counters``. Name changes and the
history bound are single transactions: atomic across processes.
"""

from __future__ import annotations

import sqlite3
import time
from typing import Any, Literal

from .db import Connection, QuickReader
from .queries import write

#: Attempt records kept per endpoint, oldest dropped first (the same bound as the core's
#: ``HISTORY_PER_ENDPOINT``, which ``WebhookRecordsContract`` checks).
HISTORY_PER_ENDPOINT = 500

Replaced = Literal["ok", "missing", "conflict"]
_COUNTERS = (
    "successes",
    "failures",
    "consecutive_failures",
    "last_status_code",
    "last_success_at",
    "last_failure_at",
)


def _create(conn: sqlite3.Connection, endpoint_id: str, name: str, document: str) -> bool:
    with write(conn):
        if conn.execute("SELECT 1 FROM webhook_endpoints WHERE name = ?", (name,)).fetchone():
            return False
        conn.execute(
            "INSERT OR REPLACE INTO webhook_endpoints (id, name, document) VALUES (?, ?, ?)",
            (endpoint_id, name, document),
        )
    return True


def _replace(conn: sqlite3.Connection, endpoint_id: str, name: str, document: str) -> Replaced:
    with write(conn):
        if not conn.execute("SELECT 1 FROM webhook_endpoints WHERE id = ?", (endpoint_id,)).fetchone():
            return "missing"
        holder = conn.execute("SELECT id FROM webhook_endpoints WHERE name = ?", (name,)).fetchone()
        if holder is not None and holder[0] != endpoint_id:
            return "conflict"
        conn.execute(
            "UPDATE webhook_endpoints SET name = ?, document = ? WHERE id = ?", (name, document, endpoint_id)
        )
    return "ok"


def _delete(conn: sqlite3.Connection, endpoint_id: str) -> bool:
    with write(conn):
        gone = conn.execute("DELETE FROM webhook_endpoints WHERE id = ?", (endpoint_id,)).rowcount
        conn.execute("DELETE FROM webhook_counters WHERE endpoint_id = ?", (endpoint_id,))
    return bool(gone)


def _add(conn: sqlite3.Connection, endpoint_id: str, delivery_id: str, document: str) -> None:
    with write(conn):
        conn.execute(
            "INSERT OR REPLACE INTO webhook_deliveries (id, endpoint_id, document) VALUES (?, ?, ?)",
            (delivery_id, endpoint_id, document),
        )
        conn.execute(
            "DELETE FROM webhook_deliveries WHERE endpoint_id = :ep AND seq NOT IN (SELECT seq FROM"
            " webhook_deliveries WHERE endpoint_id = :ep ORDER BY seq DESC LIMIT :keep)",
            {"ep": endpoint_id, "keep": HISTORY_PER_ENDPOINT},
        )


def _deliveries(conn: sqlite3.Connection, endpoint_id: str, offset: int, limit: int) -> tuple[list[str], int]:
    total = conn.execute(
        "SELECT count(*) FROM webhook_deliveries WHERE endpoint_id = ?", (endpoint_id,)
    ).fetchone()
    rows = conn.execute(
        "SELECT document FROM webhook_deliveries WHERE endpoint_id = ? ORDER BY seq DESC LIMIT ? OFFSET ?",
        (endpoint_id, limit, offset),
    )
    return [str(row[0]) for row in rows], int(total[0])


def _count(
    conn: sqlite3.Connection, endpoint_id: str, success: bool, status_code: int | None, now: float
) -> None:
    if success:
        change = "successes = successes + 1, consecutive_failures = 0, last_success_at = :now"
    else:
        change = (
            "failures = failures + 1, consecutive_failures = consecutive_failures + 1, last_failure_at = :now"
        )
    with write(conn):
        conn.execute("INSERT OR IGNORE INTO webhook_counters (endpoint_id) VALUES (:ep)", {"ep": endpoint_id})
        conn.execute(
            f"UPDATE webhook_counters SET {change},"
            " last_status_code = coalesce(:status, last_status_code) WHERE endpoint_id = :ep",
            {"ep": endpoint_id, "now": now, "status": status_code},
        )


def _counters(conn: sqlite3.Connection, endpoint_id: str) -> dict[str, Any]:
    row = conn.execute(
        f"SELECT {', '.join(_COUNTERS)} FROM webhook_counters WHERE endpoint_id = ?", (endpoint_id,)
    ).fetchone()
    if row is None:
        return {"successes": 0, "failures": 0, "consecutive_failures": 0}
    return {name: value for name, value in zip(_COUNTERS, row, strict=True) if value is not None}


def _one(conn: sqlite3.Connection, query: str, key: str) -> str | None:
    row = conn.execute(query, (key,)).fetchone()
    return None if row is None else str(row[0])


class SqliteWebhookRecords:
    """Mixed into :class:`~bifrost_async_sqlite.store.SqliteJobStore` (which opens ``writer``
    and ``reader``); see ``bifrost_async``'s ``WebhookRecords`` for each method's rule."""

    writer: Connection
    reader: Connection
    quick: QuickReader

    async def webhook_create(self, endpoint_id: str, name: str, document: str) -> bool:
        return await self.writer.run(lambda conn: _create(conn, endpoint_id, name, document))

    async def webhook_get(self, endpoint_id: str) -> str | None:
        query = "SELECT document FROM webhook_endpoints WHERE id = ?"
        return await self.quick.run(lambda conn: _one(conn, query, endpoint_id))

    async def webhook_id_by_name(self, name: str) -> str | None:
        query = "SELECT id FROM webhook_endpoints WHERE name = ?"
        return await self.quick.run(lambda conn: _one(conn, query, name))

    async def webhook_all(self) -> list[str]:
        query = "SELECT document FROM webhook_endpoints"
        return await self.reader.run(lambda conn: [str(row[0]) for row in conn.execute(query)])

    async def webhook_replace(self, endpoint_id: str, name: str, document: str) -> Replaced:
        return await self.writer.run(lambda conn: _replace(conn, endpoint_id, name, document))

    async def webhook_delete(self, endpoint_id: str) -> bool:
        return await self.writer.run(lambda conn: _delete(conn, endpoint_id))

    async def webhook_add_delivery(self, endpoint_id: str, delivery_id: str, document: str) -> None:
        await self.writer.run(lambda conn: _add(conn, endpoint_id, delivery_id, document))

    async def webhook_deliveries(self, endpoint_id: str, offset: int, limit: int) -> tuple[list[str], int]:
        return await self.reader.run(lambda conn: _deliveries(conn, endpoint_id, offset, limit))

    async def webhook_delivery(self, delivery_id: str) -> str | None:
        query = "SELECT document FROM webhook_deliveries WHERE id = ?"
        return await self.quick.run(lambda conn: _one(conn, query, delivery_id))

    async def webhook_count(self, endpoint_id: str, success: bool, status_code: int | None) -> None:
        now = time.time()
        await self.writer.run(lambda conn: _count(conn, endpoint_id, success, status_code, now))

    async def webhook_counters(self, endpoint_id: str) -> dict[str, Any]:
        return await self.quick.run(lambda conn: _counters(conn, endpoint_id))
