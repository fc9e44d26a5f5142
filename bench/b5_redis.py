"""5. Redis store vs memory store: the job round trip of (2) on each, and on two processes.

Three servers run side by side on one ``redis-server``: one with the memory store, two with the
Redis store. A/B pairs: Redis (1 process) vs memory (1 process); Redis on 2 processes vs Redis on
1. With two processes the load generator submits each job on one and polls it on the other.
"""

from __future__ import annotations

import importlib.util

from .harness import (
    LoadGen,
    RedisServer,
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

NAME = "redis"
TITLE = "5. Redis store vs memory store"


def run(settings: Settings, load: LoadGen) -> list[Row]:
    if importlib.util.find_spec("bifrost_async_redis") is None:
        raise Skip("the Redis store plugin is not installed (pip install -e plugins/redis)")
    redis = RedisServer()
    with started(redis):
        memory = Server("bench.apps:combined")
        with started(memory):
            first = Server("bench.apps:combined", BENCH_STORE="redis", BENCH_REDIS_URL=redis.url)
            with started(first):
                second = Server("bench.apps:combined", BENCH_STORE="redis", BENCH_REDIS_URL=redis.url)
                with started(second):
                    rm_a, rm_b = alternate(
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
    redis_ratio = safe_ratio(median(rm_a, "rate"), median(rm_b, "rate"))
    two_ratio = safe_ratio(median(two_a, "rate"), median(two_b, "rate"))
    conc = settings.concurrency
    return [
        Row(
            NAME,
            f"jobs/s, Redis store vs memory store, 1 process, {conc} concurrent",
            fmt(median(rm_a, "rate"), "jobs/s"),
            fmt(median(rm_b, "rate"), "jobs/s"),
            redis_ratio,
            "≥ 0.5",
            redis_ratio >= 0.5,
            f"p50 {fmt(median(rm_a, 'p50_ms'), 'ms')} vs {fmt(median(rm_b, 'p50_ms'), 'ms')}; server CPU "
            f"{median(rm_a, 'server_cpu'):.0%} vs {median(rm_b, 'server_cpu'):.0%}",
        ),
        Row(
            NAME,
            f"jobs/s, Redis store, 2 processes vs 1 (submit on one, poll on the other), {conc} concurrent",
            fmt(median(two_a, "rate"), "jobs/s"),
            fmt(median(two_b, "rate"), "jobs/s"),
            two_ratio,
            "> 1",
            two_ratio > 1,
            f"servers' CPU {median(two_a, 'server_cpu'):.0%} vs {median(two_b, 'server_cpu'):.0%} of a core "
            f"(2 cores shared with Redis and the load generator)",
        ),
    ]
