"""2. Job round trip: submit + poll-until-done of a trivial endpoint vs calling it synchronously.

Same server process and the same concurrency for both: A is ``POST /v1/async/embeddings`` then
``GET`` its ``Location`` until 200 (sleeping ``Retry-After`` capped to ``poll_cap`` between polls);
B is ``POST /bare/v1/embeddings``, the endpoint itself.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

from .harness import (
    LoadGen,
    Row,
    Server,
    Settings,
    alternate_many,
    fmt,
    jobs_spec,
    measure,
    median,
    median_cpu_per_op,
    safe_ratio,
    started,
    sync_spec,
)

NAME = "roundtrip"
TITLE = "2. job round trip (memory store)"


LONG_POLL = 10.0
#: Issue 16: server CPU per job at most this many times a sync call's; `Prefer: wait` at least
#: this share of the sync call's rate.
CPU_GOAL = 2.0
PREFER_GOAL = 0.6


def long_poll_supported() -> bool:
    """True when the core has the long-poll extension (``?wait=N``, ``Prefer: wait=N``)."""
    from bifrost_async.service.config import AsyncJobsConfig

    return "max_wait_seconds" in {field.name for field in dataclasses.fields(AsyncJobsConfig)}


def run(settings: Settings, load: LoadGen) -> list[Row]:
    server = Server("bench.apps:combined")
    busy = dataclasses.replace(
        settings, concurrency=settings.concurrency * 4, rounds=max(1, settings.rounds // 2)
    )
    with started(server):
        ports = [server.port]

        def leg(spec: dict[str, Any]) -> Callable[[], dict[str, Any]]:
            return lambda: measure([server], lambda: load.run(**spec), load)

        arms = {"poll": leg(jobs_spec(settings, ports)), "sync": leg(sync_spec(settings, ports))}
        if long_poll_supported():
            arms["long"] = leg(jobs_spec(settings, ports) | {"long_poll": LONG_POLL})
            arms["prefer"] = leg(jobs_spec(settings, ports) | {"long_poll": LONG_POLL, "prefer_wait": True})
        # the poll storm (issue 16): 4x the clients, same poll cap, in the same rotation as the
        # 16-client arm so that its ratio to it is measured side by side
        arms["storm"] = leg(jobs_spec(busy, ports))
        results = alternate_many(settings.rounds, arms)
        bb = [leg(sync_spec(busy, ports))() for _ in range(busy.rounds)]
        ba = results["storm"]
    a, b = results["poll"], results["sync"]
    cpu_a, cpu_b = median_cpu_per_op(a), median_cpu_per_op(b)
    cpu_ratio = safe_ratio(cpu_a, cpu_b)
    busy_ratio = safe_ratio(median(ba, "rate"), median(bb, "rate"))
    ratio = safe_ratio(median(a, "rate"), median(b, "rate"))
    cap_ms = settings.poll_cap * 1000
    rows = [
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
            goal_key="roundtrip",
        ),
        Row(
            NAME,
            "p50 round-trip latency: job vs sync call",
            fmt(median(a, "p50_ms"), "ms"),
            fmt(median(b, "p50_ms"), "ms"),
            safe_ratio(median(a, "p50_ms"), median(b, "p50_ms")),
        ),
        Row(
            NAME,
            "server CPU per job (submit + polls every ≤5 ms) vs per sync call (µs)",
            fmt(cpu_a, "µs"),
            fmt(cpu_b, "µs"),
            cpu_ratio,
            f"≤ {CPU_GOAL:g}",
            cpu_ratio <= CPU_GOAL,
            f"{median(a, 'polls_per_job'):.2g} polls/job (pacing holds a poll until the job ends); "
            f"load generator CPU {median(a, 'load_cpu'):.0%} vs {median(b, 'load_cpu'):.0%} of a core",
            goal_key="cpu",
        ),
    ]
    for arm, label, goal, key in (
        ("long", f"jobs/s with long-poll (each poll GET ...?wait={LONG_POLL:g}) vs sync calls/s", 0.5, ""),
        (
            "prefer",
            f"jobs/s with `Prefer: wait={LONG_POLL:g}` on the submit (one request per job) vs sync",
            PREFER_GOAL,
            "prefer",
        ),
    ):
        if arm in results:
            r = results[arm]
            arm_ratio = safe_ratio(median(r, "rate"), median(b, "rate"))
            rows.append(
                Row(
                    NAME,
                    label,
                    fmt(median(r, "rate"), "jobs/s"),
                    fmt(median(b, "rate"), "req/s"),
                    arm_ratio,
                    f"≥ {goal:g}",
                    arm_ratio >= goal,
                    f"{median(r, 'polls_per_job'):.2g} polls/job; p50 {fmt(median(r, 'p50_ms'), 'ms')}; "
                    f"{fmt(median_cpu_per_op(r), 'µs')} server CPU/job",
                    goal_key=key,
                )
            )
    storm_ratio = safe_ratio(median(ba, "rate"), median(a, "rate"))
    rows.append(
        Row(
            NAME,
            f"poll storm: jobs/s, {busy.concurrency} clients polling every ≤{cap_ms:g} ms vs "
            f"{settings.concurrency} clients",
            fmt(median(ba, "rate"), "jobs/s"),
            fmt(median(a, "rate"), "jobs/s"),
            storm_ratio,
            "≥ 0.5",
            storm_ratio >= 0.5,
            f"{median(ba, 'polls_per_job'):.2g} vs {median(a, 'polls_per_job'):.2g} polls/job; "
            f"p50 {fmt(median(ba, 'p50_ms'), 'ms')} vs {fmt(median(a, 'p50_ms'), 'ms')}",
            goal_key="storm",
        )
    )
    rows.append(
        Row(
            NAME,
            f"jobs/s vs sync calls/s, {busy.concurrency} concurrent (same poll cap)",
            fmt(median(ba, "rate"), "jobs/s"),
            fmt(median(bb, "rate"), "req/s"),
            busy_ratio,
            note=f"{median(ba, 'polls_per_job'):.2g} polls/job",
        )
    )
    return rows
