"""Fixtures: a real PostgreSQL (``initdb``/``pg_ctl`` on an ephemeral port in a temporary
directory, as the ``postgres`` user when the tests run as root), started once per session; each
test gets a schema of its own, so tests never see each other's jobs."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

from bifrost_async_postgres.server import PostgresServer, find_bindir


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """One real PostgreSQL for the whole session."""
    if find_bindir() is None:
        pytest.skip("PostgreSQL is not installed (no initdb; apt-get install postgresql)")
    server = PostgresServer()
    server.start()
    yield server
    server.destroy()


@pytest.fixture
def postgres_url(postgres_server: PostgresServer) -> str:
    return postgres_server.url


@pytest.fixture
def schema() -> str:
    """A schema name nobody else uses (the store creates it)."""
    return f"t_{uuid.uuid4().hex[:16]}"


@pytest.fixture
def own_postgres() -> Iterator[PostgresServer]:
    """A PostgreSQL of this test's own, which the test may stop and start (not yet started)."""
    if find_bindir() is None:
        pytest.skip("PostgreSQL is not installed (no initdb; apt-get install postgresql)")
    server = PostgresServer()
    yield server
    server.destroy()
