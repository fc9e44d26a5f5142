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

from .harness import (
    LoadGen,
    Row,
    Server,
    Settings,
    Skip,
    alternate,
    fmt,
    jobs_spec,
    measure,
    median,
    safe_ratio,
    started,
)

NAME = "sqlite"
TITLE = "7. SQLite store vs memory store"


def run(settings: Settings, load: LoadGen) -> list[Row]:
    if importlib.util.find_spec("bifrost_async_sqlite") is None:
        raise Skip("the SQLite store plugin is not installed (pip install -e plugins/sqlite)")
    with tempfile.TemporaryDirectory(prefix="bench-sqlite-") as directory:
        path = str(Path(directory) / "jobs.db")
        memory = Server("bench.apps:combined")
        with started(memory):
            first = Server("bench.apps:combined", BENCH_STORE="sqlite", BENCH_SQLITE_PATH=path)
            with started(first):
                second = Server("bench.apps:combined", BENCH_STORE="sqlite", BENCH_SQLITE_PATH=path)
                with started(second):
                    one, mem = alternate(
                        settings.rounds,
                        lambda: measure([first], lambda: load.run(**jobs_spec(settings, [first.port]))),
                        lambda: measure([memory], lambda: load.run(**jobs_spec(settings, [memory.port]))),
                    )
                    pair = [first, second]
                    two, single = alternate(
                        settings.rounds,
                        lambda: measure(
                            pair, lambda: load.run(**jobs_spec(settings, [s.port for s in pair]))
                        ),
                        lambda: measure([first], lambda: load.run(**jobs_spec(settings, [first.port]))),
                    )
    ratio = safe_ratio(median(one, "rate"), median(mem, "rate"))
    two_ratio = safe_ratio(median(two, "rate"), median(single, "rate"))
    conc = settings.concurrency
    return [
        Row(
            NAME,
            f"jobs/s, SQLite store vs memory store, 1 process, {conc} concurrent",
            fmt(median(one, "rate"), "jobs/s"),
            fmt(median(mem, "rate"), "jobs/s"),
            ratio,
            "≥ 0.5",
            ratio >= 0.5,
            f"p50 {fmt(median(one, 'p50_ms'), 'ms')} vs {fmt(median(mem, 'p50_ms'), 'ms')}; server CPU "
            f"{median(one, 'server_cpu'):.0%} vs {median(mem, 'server_cpu'):.0%}",
        ),
        Row(
            NAME,
            f"jobs/s, SQLite store, 2 processes vs 1 (submit on one, poll on the other), {conc} concurrent",
            fmt(median(two, "rate"), "jobs/s"),
            fmt(median(single, "rate"), "jobs/s"),
            two_ratio,
            "> 1",
            two_ratio > 1,
            f"servers' CPU {median(two, 'server_cpu'):.0%} vs {median(single, 'server_cpu'):.0%} of a core "
            f"(2 cores shared with the load generator); one file, WAL, synchronous=normal",
        ),
    ]
