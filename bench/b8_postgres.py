"""8. Postgres store vs memory store (and beside Redis in benchmark 5): the job round trip of (2)
on each, and on two processes.

Three servers run side by side on one throw-away PostgreSQL (``fsync`` off, as a benchmark of our
code rather than of the disk): one with the memory store, two with the Postgres store (schema
``bench``). A/B pairs: Postgres (1 process) vs memory (1 process); Postgres on 2 processes vs
Postgres on 1. With two processes the load generator submits each job on one and polls it on the
other.
"""

from __future__ import annotations

from .harness import (
    LoadGen,
    PostgresServer,
    Row,
    Server,
    Settings,
    alternate,
    fmt,
    jobs_spec,
    measure,
    median,
    safe_ratio,
    started,
)

NAME = "postgres"
TITLE = "8. Postgres store vs memory store"


def run(settings: Settings, load: LoadGen) -> list[Row]:
    postgres = PostgresServer()
    with started(postgres):
        memory = Server("bench.apps:combined")
        with started(memory):
            first = Server("bench.apps:combined", BENCH_STORE="postgres", BENCH_POSTGRES_URL=postgres.url)
            with started(first):
                second = Server(
                    "bench.apps:combined", BENCH_STORE="postgres", BENCH_POSTGRES_URL=postgres.url
                )
                with started(second):
                    pm_a, pm_b = alternate(
                        settings.rounds,
                        lambda: measure([first], lambda: load.run(**jobs_spec(settings, [first.port]))),
                        lambda: measure([memory], lambda: load.run(**jobs_spec(settings, [memory.port]))),
                    )
                    pair = [first, second]
                    two_a, two_b = alternate(
                        settings.rounds,
                        lambda: measure(
                            pair, lambda: load.run(**jobs_spec(settings, [s.port for s in pair]))
                        ),
                        lambda: measure([first], lambda: load.run(**jobs_spec(settings, [first.port]))),
                    )
    pg_ratio = safe_ratio(median(pm_a, "rate"), median(pm_b, "rate"))
    two_ratio = safe_ratio(median(two_a, "rate"), median(two_b, "rate"))
    conc = settings.concurrency
    return [
        Row(
            NAME,
            f"jobs/s, Postgres store vs memory store, 1 process, {conc} concurrent",
            fmt(median(pm_a, "rate"), "jobs/s"),
            fmt(median(pm_b, "rate"), "jobs/s"),
            pg_ratio,
            "(report)",
            None,
            f"p50 {fmt(median(pm_a, 'p50_ms'), 'ms')} vs {fmt(median(pm_b, 'p50_ms'), 'ms')}; server CPU "
            f"{median(pm_a, 'server_cpu'):.0%} vs {median(pm_b, 'server_cpu'):.0%}",
        ),
        Row(
            NAME,
            f"jobs/s, Postgres store, 2 processes vs 1 (submit on one, poll on the other), {conc} concurrent",
            fmt(median(two_a, "rate"), "jobs/s"),
            fmt(median(two_b, "rate"), "jobs/s"),
            two_ratio,
            "> 1",
            two_ratio > 1,
            f"servers' CPU {median(two_a, 'server_cpu'):.0%} vs {median(two_b, 'server_cpu'):.0%} of a core "
            f"(2 cores shared with PostgreSQL and the load generator)",
        ),
    ]
