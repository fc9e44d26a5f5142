"""6. Against the usual alternative: a Starlette endpoint enqueueing to an arq worker on Redis.

A is our job round trip with the Redis store (one uvicorn process); B is the same round trip
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
    alternate,
    env_for,
    fmt,
    jobs_spec,
    measure,
    median,
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
            worker = Process(
                [sys.executable, str(ROOT / "bench" / "arq_side.py")], env_for(BENCH_REDIS_URL=redis.url)
            )
            with started(worker):
                web = Server("bench.arq_side:web", BENCH_REDIS_URL=redis.url)
                with started(web):
                    a, b = alternate(
                        settings.rounds,
                        lambda: measure([ours], lambda: load.run(**jobs_spec(settings, [ours.port]))),
                        lambda: measure(
                            [web, worker], lambda: load.run(**jobs_spec(settings, [web.port], "/enqueue"))
                        ),
                    )
    ratio = median(a, "rate") / median(b, "rate")
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
    ]
