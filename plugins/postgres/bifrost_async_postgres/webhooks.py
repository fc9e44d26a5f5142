"""The Postgres store's :class:`~bifrost_async.store.WebhookRecords`: managed webhook
endpoints and their delivery history, shared by every process on the same database and schema
(tables of ``migrations/0002_webhooks.sql``). Unique names are a UNIQUE constraint, so creates
and renames are atomic; counters are single-statement upserts."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, Literal, TypeVar

import asyncpg

if TYPE_CHECKING:
    from .options import PostgresStoreOptions
    from .store import Connection

#: How long one attempt's record is kept (as the Redis store keeps it).
HISTORY_SECONDS = 7 * 24 * 3600
#: Attempt records kept per endpoint: the core's ``HISTORY_PER_ENDPOINT``, repeated here because
#: plugins import only the core's public modules (``WebhookRecordsContract`` checks the value).
HISTORY_PER_ENDPOINT = 500
#: What ``webhook_replace`` answers (the core's ``Replaced``).
Replaced = Literal["ok", "missing", "conflict"]

_T = TypeVar("_T")


def _text(value: object) -> str | None:
    return None if value is None else str(value)


class PostgresWebhookRecords:
    """Mixed into :class:`~bifrost_async_postgres.store.PostgresJobStore` (which provides
    ``options`` and ``call``)."""

    options: PostgresStoreOptions

    async def call(self, op: Callable[[Connection], Awaitable[_T]], *, checked: bool = True) -> _T:
        raise NotImplementedError  # pragma: no cover - provided by the store

    def _wh(self, table: str) -> str:
        return f"{self.options.quoted_schema}.webhook_{table}"

    async def webhook_create(self, endpoint_id: str, name: str, document: str) -> bool:
        sql = f"INSERT INTO {self._wh('endpoints')} VALUES ($1, $2, $3) ON CONFLICT DO NOTHING"
        status = await self.call(lambda conn: conn.execute(sql, endpoint_id, name, document))
        return status == "INSERT 0 1"

    async def webhook_get(self, endpoint_id: str) -> str | None:
        sql = f"SELECT document FROM {self._wh('endpoints')} WHERE id = $1"
        return _text(await self.call(lambda conn: conn.fetchval(sql, endpoint_id)))

    async def webhook_id_by_name(self, name: str) -> str | None:
        sql = f"SELECT id FROM {self._wh('endpoints')} WHERE name = $1"
        return _text(await self.call(lambda conn: conn.fetchval(sql, name)))

    async def webhook_all(self) -> list[str]:
        sql = f"SELECT document FROM {self._wh('endpoints')}"
        rows = await self.call(lambda conn: conn.fetch(sql))
        return [str(row["document"]) for row in rows]

    async def webhook_replace(self, endpoint_id: str, name: str, document: str) -> Replaced:
        sql = f"UPDATE {self._wh('endpoints')} SET name = $2, document = $3 WHERE id = $1"

        async def replace(conn: Connection) -> Replaced:
            try:
                status = await conn.execute(sql, endpoint_id, name, document)
            except asyncpg.UniqueViolationError:
                return "conflict"  # another endpoint holds the name
            return "ok" if status == "UPDATE 1" else "missing"

        return await self.call(replace)

    async def webhook_delete(self, endpoint_id: str) -> bool:
        sql = (
            f"WITH gone AS (DELETE FROM {self._wh('endpoints')} WHERE id = $1 RETURNING id),"
            f" counted AS (DELETE FROM {self._wh('counters')} WHERE endpoint_id IN (SELECT id FROM gone))"
            " SELECT count(*) FROM gone"
        )
        return bool(await self.call(lambda conn: conn.fetchval(sql, endpoint_id)))

    async def webhook_add_delivery(self, endpoint_id: str, delivery_id: str, document: str) -> None:
        table = self._wh("deliveries")
        insert = (
            f"INSERT INTO {table} (endpoint_id, delivery_id, document, recorded_at) VALUES ($1, $2, $3, $4)"
            " ON CONFLICT (delivery_id) DO UPDATE SET document = excluded.document"
        )
        # the oldest records beyond the bound go, so they cannot be redelivered
        trim = (
            f"DELETE FROM {table} WHERE endpoint_id = $1 AND seq <= (SELECT seq FROM {table}"
            f" WHERE endpoint_id = $1 ORDER BY seq DESC OFFSET {HISTORY_PER_ENDPOINT} LIMIT 1)"
        )

        async def add(conn: Connection) -> None:
            async with conn.transaction():
                await conn.execute(insert, endpoint_id, delivery_id, document, time.time())
                await conn.execute(trim, endpoint_id)

        await self.call(add)

    async def webhook_deliveries(self, endpoint_id: str, offset: int, limit: int) -> tuple[list[str], int]:
        table = self._wh("deliveries")
        total_sql = f"SELECT count(*) FROM {table} WHERE endpoint_id = $1"
        page_sql = f"SELECT document FROM {table} WHERE endpoint_id = $1 ORDER BY seq DESC OFFSET $2 LIMIT $3"

        async def read(conn: Connection) -> tuple[list[str], int]:
            total = int(await conn.fetchval(total_sql, endpoint_id))
            rows = await conn.fetch(page_sql, endpoint_id, offset, limit)
            return [str(row["document"]) for row in rows], total

        return await self.call(read)

    async def webhook_delivery(self, delivery_id: str) -> str | None:
        sql = f"SELECT document FROM {self._wh('deliveries')} WHERE delivery_id = $1"
        return _text(await self.call(lambda conn: conn.fetchval(sql, delivery_id)))

    async def webhook_count(self, endpoint_id: str, success: bool, status_code: int | None) -> None:
        table = self._wh("counters")
        if success:
            sql = (
                f"INSERT INTO {table} AS c (endpoint_id, successes, last_success_at, last_status_code)"
                " VALUES ($1, 1, $2, $3) ON CONFLICT (endpoint_id) DO UPDATE SET"
                " successes = c.successes + 1, consecutive_failures = 0, last_success_at = $2,"
                " last_status_code = coalesce($3, c.last_status_code)"
            )
        else:
            sql = (
                f"INSERT INTO {table} AS c (endpoint_id, failures, consecutive_failures, last_failure_at,"
                " last_status_code) VALUES ($1, 1, 1, $2, $3) ON CONFLICT (endpoint_id) DO UPDATE SET"
                " failures = c.failures + 1, consecutive_failures = c.consecutive_failures + 1,"
                " last_failure_at = $2, last_status_code = coalesce($3, c.last_status_code)"
            )
        await self.call(lambda conn: conn.execute(sql, endpoint_id, time.time(), status_code))

    async def webhook_counters(self, endpoint_id: str) -> dict[str, Any]:
        sql = f"SELECT * FROM {self._wh('counters')} WHERE endpoint_id = $1"
        row = await self.call(lambda conn: conn.fetchrow(sql, endpoint_id))
        counters: dict[str, Any] = {"successes": 0, "failures": 0, "consecutive_failures": 0}
        if row is not None:
            for name, value in row.items():
                if name != "endpoint_id" and value is not None:
                    counters[name] = float(value) if name.endswith("_at") else int(value)
        return counters

    async def webhook_purge_history(self) -> None:
        """Drop delivery records older than :data:`HISTORY_SECONDS` (run by the purge)."""
        sql = f"DELETE FROM {self._wh('deliveries')} WHERE recorded_at < $1"
        await self.call(lambda conn: conn.execute(sql, time.time() - HISTORY_SECONDS))
