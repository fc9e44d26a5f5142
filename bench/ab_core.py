"""Compare two checkouts of the core on the job round trip: ``python bench/ab_core.py NEW OLD``.

NEW and OLD are directories holding a ``bifrost_async`` package (e.g. ``git archive HEAD~1
bifrost_async | tar -x -C /tmp/old``). One server runs from each, side by side, and the load
generator alternates between them; prints jobs/s and server CPU per job of each, and the ratios.
This is how a core optimisation's before/after figures are measured.

``--store redis`` runs both on the Redis store (one throw-away ``redis-server`` for both; a
checkout's ``plugins/redis``, when it has one, comes first on its path, so a change to the plugin
is measured too: ``git archive HEAD~1 bifrost_async plugins/redis | tar -x -C /tmp/old``) and adds
a third arm, NEW on the memory store, so that each side's Redis/memory ratio (issue 16's goal) is
measured in the same rotation.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.harness import (
    LoadGen,
    RedisServer,
    Server,
    Settings,
    alternate_many,
    jobs_spec,
    measure,
    median,
    median_cpu_per_op,
    safe_ratio,
    started,
)


def server_from(checkout: Path, **env: str) -> Server:
    previous = os.environ.get("PYTHONPATH")
    plugin = checkout / "plugins" / "redis"
    paths = [plugin, checkout] if plugin.is_dir() else [checkout]
    os.environ["PYTHONPATH"] = os.pathsep.join(map(str, paths))  # the harness puts it first
    try:
        return Server("bench.apps:combined", **env)
    finally:
        if previous is None:
            del os.environ["PYTHONPATH"]
        else:
            os.environ["PYTHONPATH"] = previous


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("new", type=Path)
    parser.add_argument("old", type=Path)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument(
        "--concurrency", type=int, default=16, help="clients polling at once (64: the poll storm)"
    )
    parser.add_argument(
        "--prefer-wait",
        action="store_true",
        help="submit with Prefer: wait=10, one request per job (needs the long-poll extension)",
    )
    parser.add_argument(
        "--store", choices=("memory", "redis"), default="memory", help="the store both sides use"
    )
    args = parser.parse_args()
    extra: dict[str, Any] = {"long_poll": 10, "prefer_wait": True} if args.prefer_wait else {}
    settings = Settings(rounds=args.rounds, concurrency=args.concurrency)
    load = LoadGen()
    redis = RedisServer() if args.store == "redis" else None
    env = {"BENCH_STORE": "redis", "BENCH_REDIS_URL": redis.url} if redis else {}
    with started(*([redis] if redis else [])):
        # a prefix each: neither hears the other's job-ended messages (or sweeps its jobs)
        new = server_from(args.new, **env, BENCH_REDIS_PREFIX="new:")
        old = server_from(args.old, **env, BENCH_REDIS_PREFIX="old:")
        arms = {"new": new, "old": old}
        if redis:
            arms["memory"] = server_from(args.new)
        with started(*arms.values(), load):

            def leg(server: Server) -> Any:
                return lambda: measure(
                    [server], lambda: load.run(**jobs_spec(settings, [server.port]), **extra), load
                )

            results = alternate_many(settings.rounds, {name: leg(server) for name, server in arms.items()})
    for name, r in results.items():
        print(
            f"{name}: {median(r, 'rate'):.0f} jobs/s, {median_cpu_per_op(r):.0f} µs server CPU/job, "
            f"{median(r, 'polls_per_job'):.2g} polls/job, p50 {median(r, 'p50_ms'):.1f} ms"
        )
    a, b = results["new"], results["old"]
    rate, cpu = (
        safe_ratio(median(a, "rate"), median(b, "rate")),
        safe_ratio(median_cpu_per_op(a), median_cpu_per_op(b)),
    )
    print(f"new/old: jobs/s {rate:.3f}, CPU/job {cpu:.3f}")
    per_round = sorted(x["rate"] / y["rate"] for x, y in zip(a, b, strict=True) if y["rate"])
    print(f"new/old jobs/s per round: {', '.join(f'{q:.2f}' for q in per_round)}")
    if "memory" in results:
        mem = median(results["memory"], "rate")
        print(
            f"Redis/memory: new {safe_ratio(median(a, 'rate'), mem):.3f}, "
            f"old {safe_ratio(median(b, 'rate'), mem):.3f}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
