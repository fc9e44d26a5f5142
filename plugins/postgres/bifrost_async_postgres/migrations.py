"""Versioned schema migrations: ``migrations/NNNN_name.sql`` in this package, applied in order.

:func:`migrate` runs every pending one in a single transaction under a transaction-level
advisory lock keyed by the schema name, so two processes starting together never race (the
second waits, then finds nothing to do). Applied versions are rows of ``<schema>.schema_version``.
The server runs it at startup unless the store option ``migrate`` is false; an operator runs it
without a server: ``python -m bifrost_async_postgres migrate --url ... [--schema ...]``.
"""

from __future__ import annotations

import dataclasses
import re
from importlib import resources
from typing import TYPE_CHECKING, Any, TypeAlias

if TYPE_CHECKING:
    import asyncpg
    import asyncpg.pool

#: A plain connection or a pooled one.
Conn: TypeAlias = "asyncpg.Connection[Any] | asyncpg.pool.PoolConnectionProxy[Any]"

_FILE = re.compile(r"(\d{4})_([a-z0-9_]+)\.sql")


@dataclasses.dataclass(frozen=True)
class Migration:
    """One versioned SQL file; ``@schema@`` in it stands for the quoted schema name."""

    version: int
    name: str
    sql: str


def migrations() -> list[Migration]:
    """Every migration shipped with the package, by version."""
    found = []
    for entry in resources.files(__package__).joinpath("migrations").iterdir():
        match = _FILE.fullmatch(entry.name)
        if match:
            found.append(Migration(int(match[1]), match[2], entry.read_text(encoding="utf-8")))
    return sorted(found, key=lambda migration: migration.version)


def latest() -> int:
    """The schema version this package expects."""
    return migrations()[-1].version


async def current_version(conn: Conn, schema: str) -> int:
    """The highest version applied to ``schema`` (0: none, or no schema at all)."""
    table = await conn.fetchval("SELECT to_regclass($1)", f'"{schema}".schema_version')
    if table is None:
        return 0
    version = await conn.fetchval(f'SELECT max(version) FROM "{schema}".schema_version')
    return int(version or 0)


async def migrate(conn: Conn, schema: str) -> list[int]:
    """Apply the pending migrations to ``schema`` (created if missing); the versions applied.

    Raises :class:`RuntimeError` if the database holds a newer version than this package knows
    (an older plugin must not write to a schema it does not understand)."""
    quoted = f'"{schema}"'
    async with conn.transaction():
        # two-key form: (a constant for this plugin, the schema), so other users' locks never clash
        await conn.execute(
            "SELECT pg_advisory_xact_lock(hashtext('bifrost_async_postgres'), hashtext($1))", schema
        )
        await conn.execute(f"CREATE SCHEMA IF NOT EXISTS {quoted}")
        await conn.execute(
            f"CREATE TABLE IF NOT EXISTS {quoted}.schema_version (version integer PRIMARY KEY, "
            "name text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())"
        )
        have = await current_version(conn, schema)
        check_not_newer(have, schema)
        applied = []
        for migration in migrations():
            if migration.version <= have:
                continue
            await conn.execute(migration.sql.replace("@schema@", quoted))
            await conn.execute(
                f"INSERT INTO {quoted}.schema_version (version, name) VALUES ($1, $2)",
                migration.version,
                migration.name,
            )
            applied.append(migration.version)
    return applied


def check_not_newer(have: int, schema: str) -> None:
    """Refuse a schema migrated by a newer release of this plugin."""
    if have > latest():
        raise RuntimeError(
            f"postgres store schema {schema!r} is at version {have}, newer than this "
            f"bifrost-async-postgres knows ({latest()}); upgrade the plugin"
        )
