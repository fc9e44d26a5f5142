"""Idempotency claims for the Postgres store (table ``claims``, function ``claim_key``): a claim
is taken or its live holder returned in one atomic call; it lives until it lapses while its job
does not exist, for the job's life once it does (``create_job`` and ``update_job`` set its lapse),
and goes with the job's delete or purge."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, TypeVar

if TYPE_CHECKING:
    from .options import PostgresStoreOptions
    from .store import Connection

_T = TypeVar("_T")


class PostgresClaims:
    """Mixed into :class:`~bifrost_async_postgres.store.PostgresJobStore` (which provides
    ``options``, ``clock`` and ``call``)."""

    options: PostgresStoreOptions
    clock: Callable[[], float]

    async def call(self, op: Callable[[Connection], Awaitable[_T]], *, checked: bool = True) -> _T:
        raise NotImplementedError  # pragma: no cover - provided by the store

    async def claim_idempotency_key(
        self, claim: str, fingerprint: str, job_id: str, ttl: float
    ) -> tuple[str | None, bool]:
        """See :meth:`bifrost_async.store.JobStore.claim_idempotency_key`."""
        now = float(self.clock())
        sql = f"SELECT job_id, fingerprint FROM {self.options.quoted_schema}.claim_key($1, $2, $3, $4, $5)"
        args = (claim, job_id, fingerprint, now + ttl, now)
        held = await self.call(lambda conn: conn.fetchrow(sql, *args))
        if held is None or held["job_id"] == job_id:
            return None, True  # ours now, or ours already (a retry after a lost reply)
        return str(held["job_id"]), held["fingerprint"] == fingerprint

    async def find_idempotency_key(self, claim: str) -> tuple[str, str] | None:
        """See :meth:`bifrost_async.store.JobStore.find_idempotency_key`."""
        schema = self.options.quoted_schema
        sql = (
            f"SELECT job_id, fingerprint FROM {schema}.claims c"
            f" WHERE claim = $1 AND {schema}.claim_live(c.job_id, c.lapses_at, $2)"
        )
        now = float(self.clock())
        held = await self.call(lambda conn: conn.fetchrow(sql, claim, now))
        return None if held is None else (str(held["job_id"]), str(held["fingerprint"]))

    async def release_idempotency_key(self, claim: str, job_id: str) -> None:
        """See :meth:`bifrost_async.store.JobStore.release_idempotency_key`."""
        schema = self.options.quoted_schema
        sql = (
            f"DELETE FROM {schema}.claims WHERE claim = $1 AND job_id = $2"
            f" AND NOT EXISTS (SELECT 1 FROM {schema}.jobs WHERE id = $2)"
        )
        await self.call(lambda conn: conn.execute(sql, claim, job_id))
