"""5. Redis store vs memory store: the job round trip of (2) on each, and on two processes.

Three servers run side by side on one ``redis-server``: one with the memory store, two with the
Redis store. A/B pairs: Redis (1 process) vs memory (1 process); Redis on 2 processes vs Redis on
1. With two processes the load generator submits each job on one and polls it on the other.
"""

from __future__ import annotations

import importlib.util

from .harness import LoadGen, RedisServer, Row, Settings, Skip, shared_store_rows, started

NAME = "redis"
TITLE = "5. Redis store vs memory store"


def run(settings: Settings, load: LoadGen) -> list[Row]:
    if importlib.util.find_spec("bifrost_async_redis") is None:
        raise Skip("the Redis store plugin is not installed (pip install -e plugins/redis)")
    redis = RedisServer()
    with started(redis):
        return shared_store_rows(
            settings,
            load,
            name=NAME,
            label="Redis",
            env={"BENCH_STORE": "redis", "BENCH_REDIS_URL": redis.url},
            goal=0.6,  # issue 16
            goal_key="redis",
            two_note="(2 cores shared with Redis and the load generator)",
        )
