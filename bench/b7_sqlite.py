"""7. SQLite store vs memory store: the job round trip of (2) on each, and on two processes.

Three servers run side by side: one with the memory store, two with the SQLite store on one
database file (in a temporary directory). A/B pairs: SQLite (1 process) vs memory (1 process);
SQLite on 2 processes vs SQLite on 1. With two processes the load generator submits each job on
one and polls it on the other, so every poll reads a job another process wrote.
"""

from __future__ import annotations

import importlib.util
import tempfile
from pathlib import Path

from .harness import LoadGen, Row, Settings, Skip, shared_store_rows

NAME = "sqlite"
TITLE = "7. SQLite store vs memory store"


def run(settings: Settings, load: LoadGen) -> list[Row]:
    if importlib.util.find_spec("bifrost_async_sqlite") is None:
        raise Skip("the SQLite store plugin is not installed (pip install -e plugins/sqlite)")
    with tempfile.TemporaryDirectory(prefix="bench-sqlite-") as directory:
        return shared_store_rows(
            settings,
            load,
            name=NAME,
            label="SQLite",
            env={"BENCH_STORE": "sqlite", "BENCH_SQLITE_PATH": str(Path(directory) / "jobs.db")},
            goal=0.5,
            two_note="(2 cores shared with the load generator); one file, WAL, synchronous=normal",
        )
