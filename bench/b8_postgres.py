"""8. Postgres store vs memory store (and beside Redis in benchmark 5): the job round trip of (2)
on each, and on two processes.

Three servers run side by side on one throw-away PostgreSQL (``fsync`` off, as a benchmark of our
code rather than of the disk): one with the memory store, two with the Postgres store (schema
``bench``). A/B pairs: Postgres (1 process) vs memory (1 process); Postgres on 2 processes vs
Postgres on 1. With two processes the load generator submits each job on one and polls it on the
other.
"""

from __future__ import annotations

from .harness import LoadGen, PostgresServer, Row, Settings, shared_store_rows, started

NAME = "postgres"
TITLE = "8. Postgres store vs memory store"


def run(settings: Settings, load: LoadGen) -> list[Row]:
    postgres = PostgresServer()
    with started(postgres):
        return shared_store_rows(
            settings,
            load,
            name=NAME,
            label="Postgres",
            env={"BENCH_STORE": "postgres", "BENCH_POSTGRES_URL": postgres.url},
            goal=None,
            two_note="(2 cores shared with PostgreSQL and the load generator)",
        )
