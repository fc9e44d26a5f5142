"""2. Job round trip: submit + poll-until-done of a trivial endpoint vs calling it synchronously.

Same server process and the same concurrency for both: A is ``POST /v1/async/embeddings`` then
``GET`` its ``Location`` until 200 (sleeping ``Retry-After`` capped to ``poll_cap`` between polls);
B is ``POST /bare/v1/embeddings``, the endpoint itself.
"""

from __future__ import annotations

import dataclasses
import statistics
from typing import Any

from .harness import (
    LoadGen,
    Row,
    Server,
    Settings,
    alternate,
    fmt,
    jobs_spec,
    measure,
    median,
    started,
    sync_spec,
)

NAME = "roundtrip"
TITLE = "2. job round trip (memory store)"


def run(settings: Settings, load: LoadGen) -> list[Row]:
    server = Server("bench.apps:combined")
    busy = dataclasses.replace(
        settings, concurrency=settings.concurrency * 4, rounds=max(1, settings.rounds // 2)
    )
    with started(server):
        ports = [server.port]
        a, b = alternate(
            settings.rounds,
            lambda: measure([server], lambda: load.run(**jobs_spec(settings, ports)), load),
            lambda: measure([server], lambda: load.run(**sync_spec(settings, ports)), load),
        )
        ba, bb = alternate(
            busy.rounds,
            lambda: measure([server], lambda: load.run(**jobs_spec(busy, ports)), load),
            lambda: measure([server], lambda: load.run(**sync_spec(busy, ports)), load),
        )
    cpu_a, cpu_b = cpu_per_op(a), cpu_per_op(b)
    busy_ratio = median(ba, "rate") / median(bb, "rate")
    ratio = median(a, "rate") / median(b, "rate")
    cap_ms = settings.poll_cap * 1000
    return [
        Row(
            NAME,
            f"jobs/s (submit + poll every ≤{cap_ms:g} ms until done) vs sync calls/s, "
            f"{settings.concurrency} concurrent",
            fmt(median(a, "rate"), "jobs/s"),
            fmt(median(b, "rate"), "req/s"),
            ratio,
            "≥ 0.5",
            ratio >= 0.5,
            f"{median(a, 'polls_per_job'):.2g} polls/job; server CPU {median(a, 'server_cpu'):.0%} "
            f"vs {median(b, 'server_cpu'):.0%} of a core",
        ),
        Row(
            NAME,
            "p50 round-trip latency: job vs sync call",
            fmt(median(a, "p50_ms"), "ms"),
            fmt(median(b, "p50_ms"), "ms"),
            median(a, "p50_ms") / median(b, "p50_ms"),
        ),
        Row(
            NAME,
            "server CPU per job vs per sync call (µs)",
            fmt(cpu_a, "µs"),
            fmt(cpu_b, "µs"),
            cpu_a / cpu_b,
            note=f"load generator CPU {median(a, 'load_cpu'):.0%} vs {median(b, 'load_cpu'):.0%} of a core",
        ),
        Row(
            NAME,
            f"jobs/s vs sync calls/s, {busy.concurrency} concurrent (same poll cap)",
            fmt(median(ba, "rate"), "jobs/s"),
            fmt(median(bb, "rate"), "req/s"),
            busy_ratio,
            note=f"{median(ba, 'polls_per_job'):.2g} polls/job",
        ),
    ]


def cpu_per_op(results: list[dict[str, Any]]) -> float:
    """Median server CPU microseconds per completed operation."""
    return statistics.median(r["server_cpu"] / r["rate"] * 1e6 for r in results if r["rate"])
