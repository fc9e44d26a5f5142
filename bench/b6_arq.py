"""6. Against the usual alternative: a Starlette endpoint enqueueing to an arq worker on Redis.

A is our job round trip with the Redis store (one uvicorn process, then two sharing Redis, as
arq's side runs two processes); B is the same round trip
through ``bench/arq_side.py``: ``POST /enqueue`` (uvicorn) → arq worker (its own process) →
``GET /status/{id}``. Same Redis server, same load generator, same poll cap.
"""

from __future__ import annotations

import importlib.util
import sys

from .harness import (
    ROOT,
    LoadGen,
    Process,
    RedisServer,
    Row,
    Server,
    Settings,
    Skip,
    alternate_many,
    env_for,
    fmt,
    jobs_spec,
    measure,
    median,
    safe_ratio,
    started,
)

NAME = "arq"
TITLE = "6. against FastAPI/Starlette + arq"


def run(settings: Settings, load: LoadGen) -> list[Row]:
    missing = [name for name in ("arq", "bifrost_async_redis") if importlib.util.find_spec(name) is None]
    if missing:
        raise Skip(f"not installed: {', '.join(missing)} (pip install -e '.[bench]' -e plugins/redis)")
    redis = RedisServer()
    with started(redis):
        ours = Server("bench.apps:combined", BENCH_STORE="redis", BENCH_REDIS_URL=redis.url)
        with started(ours):
            second = Server("bench.apps:combined", BENCH_STORE="redis", BENCH_REDIS_URL=redis.url)
            with started(second):
                worker = Process(
                    [sys.executable, str(ROOT / "bench" / "arq_side.py")], env_for(BENCH_REDIS_URL=redis.url)
                )
                with started(worker):
                    web = Server("bench.arq_side:web", BENCH_REDIS_URL=redis.url)
                    with started(web):
                        pair = [ours, second]
                        results = alternate_many(
                            settings.rounds,
                            {
                                "ours": lambda: measure(
                                    [ours], lambda: load.run(**jobs_spec(settings, [ours.port]))
                                ),
                                "arq": lambda: measure(
                                    [web, worker],
                                    lambda: load.run(**jobs_spec(settings, [web.port], "/enqueue")),
                                ),
                                "ours2": lambda: measure(
                                    pair, lambda: load.run(**jobs_spec(settings, [s.port for s in pair]))
                                ),
                            },
                        )
    a, b, two = results["ours"], results["arq"], results["ours2"]
    ratio = safe_ratio(median(a, "rate"), median(b, "rate"))
    two_ratio = safe_ratio(median(two, "rate"), median(b, "rate"))
    return [
        Row(
            NAME,
            f"jobs/s, ours (Redis store) vs Starlette + arq worker, {settings.concurrency} concurrent",
            fmt(median(a, "rate"), "jobs/s"),
            fmt(median(b, "rate"), "jobs/s"),
            ratio,
            "(report)",
            note=f"p50 {fmt(median(a, 'p50_ms'), 'ms')} vs {fmt(median(b, 'p50_ms'), 'ms')}; CPU "
            f"{median(a, 'server_cpu'):.0%} (1 process) vs {median(b, 'server_cpu'):.0%} (web + worker) "
            "of a core",
        ),
        Row(
            NAME,
            "jobs/s, ours on 2 processes (as many as arq's web + worker) vs Starlette + arq worker",
            fmt(median(two, "rate"), "jobs/s"),
            fmt(median(b, "rate"), "jobs/s"),
            two_ratio,
            "(report)",
            note=f"p50 {fmt(median(two, 'p50_ms'), 'ms')}; CPU {median(two, 'server_cpu'):.0%} of a core",
        ),
    ]
