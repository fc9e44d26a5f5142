"""Do uvloop and httptools pay here? The same server with and without them, alternated in one run.

``python -m bench.uvloop_ab [ROUNDS]`` (run by an environment with ``uvloop`` and ``httptools``
installed, e.g. ``pip install -e '.[fast]'``) starts two ``bench.apps:combined`` servers (memory
store) from this checkout: one with ``loop="uvloop", http="httptools"`` (what uvicorn's ``auto``
picks, and so ``bifrost-async serve``, when they are installed), one with ``loop="asyncio",
http="h11"`` (what it picks without them). The load generator, the same for both, alternates
three workloads on each (16 clients, benchmark 2's specs):

- ``sync``: ``POST /bare/v1/embeddings``, the trivial endpoint called synchronously;
- ``jobs``: the job round trip, submit + poll every ≤5 ms until done;
- ``prefer``: the submit with ``Prefer: wait=10``, one request per job.

``--redis`` puts both servers on the Redis store (one ``redis-server``, redis-py's asyncio client
then runs on the loop under test too). Each round runs all six legs, the order rotated. Prints,
per workload, the medians of rate and server CPU per operation with and without, the ratio of the
medians, and each round's ratio with how many rounds the fast pair was ahead, to tell a steady
gain from noise on a shared machine.
"""

from __future__ import annotations

import argparse
import importlib.util
import statistics
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: make the repository root importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.harness import (
    LoadGen,
    RedisServer,
    Running,
    Server,
    Settings,
    alternate_many,
    cpu_per_op,
    jobs_spec,
    measure,
    median,
    safe_ratio,
    sync_spec,
)

#: (BENCH_LOOP, BENCH_HTTP) of each server (``bench/serve.py``).
PAIRS = {"fast": ("uvloop", "httptools"), "plain": ("asyncio", "h11")}
WORKLOADS = ("sync", "jobs", "prefer")


def specs(settings: Settings, port: int) -> dict[str, dict[str, Any]]:
    jobs = jobs_spec(settings, [port])
    return {
        "sync": sync_spec(settings, [port]),
        "jobs": jobs,
        "prefer": jobs | {"long_poll": 10.0, "prefer_wait": True},
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("rounds", type=int, nargs="?", default=7, help="rounds of all six legs [default: 7]")
    parser.add_argument("--redis", action="store_true", help="both servers on the Redis store")
    args = parser.parse_args(argv)
    if args.rounds < 1:
        parser.error("rounds: must be at least 1")
    missing = [name for name in ("uvloop", "httptools") if importlib.util.find_spec(name) is None]
    if missing:
        parser.error(f"not installed here: {', '.join(missing)} (pip install -e '.[fast]')")
    settings = Settings()
    load = LoadGen()
    try:
        with Running() as running:
            store: dict[str, str] = {}
            if args.redis:
                store = {"BENCH_STORE": "redis", "BENCH_REDIS_URL": running.up(RedisServer()).url}
            legs: dict[str, Callable[[], dict[str, Any]]] = {}
            for name, (loop, http) in PAIRS.items():
                server = running.up(Server("bench.apps:combined", BENCH_LOOP=loop, BENCH_HTTP=http, **store))
                for workload, spec in specs(settings, server.port).items():
                    legs[f"{workload}/{name}"] = lambda server=server, spec=spec: measure(
                        [server], lambda: load.run(**spec), load
                    )
            results = alternate_many(args.rounds, legs)
    finally:
        load.close()
    print(
        f"{args.rounds} rounds, {settings.concurrency} clients, {settings.duration:g} s legs, "
        f"{'Redis' if args.redis else 'memory'} store"
    )
    print(
        "| workload | rate with / without | ratio | server CPU per op with / without | ratio | "
        "per-round rate ratios (ahead) | server CPU share | p50 |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for workload in WORKLOADS:
        fast, plain = results[f"{workload}/fast"], results[f"{workload}/plain"]
        cpu_fast = statistics.median(cpu_per_op(leg) for leg in fast)
        cpu_plain = statistics.median(cpu_per_op(leg) for leg in plain)
        per_round = [safe_ratio(x["rate"], y["rate"]) for x, y in zip(fast, plain, strict=True)]
        ahead = sum(ratio > 1 for ratio in per_round)
        unit = "req/s" if workload == "sync" else "jobs/s"
        print(
            f"| {workload} | {median(fast, 'rate'):,.0f} / {median(plain, 'rate'):,.0f} {unit} | "
            f"{safe_ratio(median(fast, 'rate'), median(plain, 'rate')):.2f} | "
            f"{cpu_fast:,.0f} / {cpu_plain:,.0f} µs | {safe_ratio(cpu_fast, cpu_plain):.2f} | "
            f"{min(per_round):.2f}-{max(per_round):.2f} ({ahead} of {len(per_round)}) | "
            f"{median(fast, 'server_cpu'):.0%} / {median(plain, 'server_cpu'):.0%} | "
            f"{median(fast, 'p50_ms'):.1f} / {median(plain, 'p50_ms'):.1f} ms |"
        )
    for name in PAIRS:
        jobs, sync = results[f"jobs/{name}"], results[f"sync/{name}"]
        cpu = safe_ratio(
            statistics.median(cpu_per_op(leg) for leg in jobs),
            statistics.median(cpu_per_op(leg) for leg in sync),
        )
        rate = safe_ratio(median(jobs, "rate"), median(sync, "rate"))
        print(f"{name}: CPU per job / per sync call {cpu:.2f} (goal ≤ 2), jobs/s / sync calls/s {rate:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
