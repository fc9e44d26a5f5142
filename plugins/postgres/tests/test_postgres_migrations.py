"""Migrations: versioned, applied once under an advisory lock even when processes start together,
runnable without a server (``python -m bifrost_async_postgres``), and refused when newer."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys

import asyncpg
import pytest

from bifrost_async_postgres import migrations


async def test_racing_migrations_apply_each_version_once(postgres_url: str, schema: str) -> None:
    conns = [await asyncpg.connect(postgres_url) for _ in range(4)]
    try:
        applied = await asyncio.gather(*(migrations.migrate(conn, schema) for conn in conns))
        every = [m.version for m in migrations.migrations()]
        assert sorted(applied, key=len)[-1] == every  # one of them applied everything...
        assert sum(len(versions) for versions in applied) == len(every)  # ...and nobody else did
        rows = await conns[0].fetch(f'SELECT version FROM "{schema}".schema_version ORDER BY version')
        assert [row["version"] for row in rows] == every
        assert await migrations.current_version(conns[0], schema) == migrations.latest()
    finally:
        for conn in conns:
            await conn.close()


async def test_a_schema_from_a_newer_release_is_refused(postgres_url: str, schema: str) -> None:
    conn = await asyncpg.connect(postgres_url)
    try:
        await migrations.migrate(conn, schema)
        await conn.execute(
            f'INSERT INTO "{schema}".schema_version (version, name) VALUES (9999, $1)', "future"
        )
        with pytest.raises(RuntimeError, match="newer than this bifrost-async-postgres knows"):
            await migrations.migrate(conn, schema)
    finally:
        await conn.close()


def cli(*args: str, url: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "BIFROST_ASYNC_POSTGRES_URL"}
    if url is not None:
        env["BIFROST_ASYNC_POSTGRES_URL"] = url
    command = [sys.executable, "-m", "bifrost_async_postgres", *args]
    return subprocess.run(command, capture_output=True, text=True, env=env, timeout=60, check=False)


def test_the_migrate_command_runs_without_a_server(postgres_url: str, schema: str) -> None:
    behind = cli("status", "--schema", schema, url=postgres_url)
    assert behind.returncode == 3 and f"schema {schema} at version 0" in behind.stdout
    done = cli("migrate", "--schema", schema, url=postgres_url)
    assert done.returncode == 0, done.stderr
    assert f"at version {migrations.latest()}" in done.stdout
    assert cli("status", "--url", postgres_url, "--schema", schema).returncode == 0


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("migrate",), "--url is required"),
        (("migrate", "--url", "postgresql://x/y", "--schema", "No-Way"), "schema must be"),
        (("drop",), "invalid choice"),
    ],
)
def test_a_misused_command_is_one_line_and_exit_2(args: tuple[str, ...], message: str) -> None:
    done = cli(*args)
    assert done.returncode == 2
    assert message in done.stderr.strip().splitlines()[-1]


def test_an_unreachable_server_is_a_clear_error_without_the_password() -> None:
    from bifrost_async_postgres.server import free_port

    done = cli("status", "--url", f"postgresql://app:s3cret@127.0.0.1:{free_port()}/db")
    assert done.returncode == 1 and "error: postgresql://127.0.0.1" in done.stderr
    assert "s3cret" not in done.stderr + done.stdout
