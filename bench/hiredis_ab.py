"""Does hiredis pay for the Redis store? The job round trip with and without it, alternated in one run.

``python -m bench.hiredis_ab WITH_PYTHON WITHOUT_PYTHON [ROUNDS]``: two virtualenvs of this
checkout with the same redis-py (8.x; not the ``bench`` extra, whose arq pins redis-py < 6), one
with the ``hiredis`` package installed (redis-py then parses replies with it) and one without.
Each serves ``bench.apps:combined`` with the Redis store (``bench/python_ab.py``'s ``ServerWith``)
on one shared ``redis-server``, and the two are alternated under benchmark 2's round trip
(16 clients, 5 ms poll cap). Prints jobs/s and server CPU per job for each, the ratio of the
medians, and the ratio of every round, to tell a steady gain from noise on a shared machine.

Then, as a less noisy cross-check, the client CPU per Redis command in each environment, alternated
(``--commands`` in a child process): 16 tasks reading a ~1 KB job record with ``HGET`` (the
store's ``get``) and calling a tiny Lua script that answers an integer (its create and updates),
timed with ``time.process_time``, which other load on the machine barely moves.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import statistics
import subprocess
import sys
import time
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make the repository root importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.harness import (
    LoadGen,
    RedisServer,
    Running,
    Settings,
    alternate,
    cpu_per_op,
    jobs_spec,
    measure,
    median,
)
from bench.python_ab import ServerWith

PROBE = "import redis, redis.utils as u; print(redis.__version__, u.HIREDIS_AVAILABLE)"


def probe(python: str) -> tuple[str, bool]:
    """The redis-py version ``python`` imports, and whether redis-py found hiredis there."""
    done = subprocess.run([python, "-c", PROBE], capture_output=True, text=True, timeout=60, check=True)
    version, available = done.stdout.split()
    return version, available == "True"


COMMAND_TASKS = 16
COMMANDS_PER_TASK = 1000
RECORD = json.dumps({"id": "j" * 22, "status": "succeeded", "result": {"data": [0.125] * 120}})
SCRIPT = "redis.call('HSET', KEYS[1], 'status', ARGV[1]); return 1"


async def commands_cpu(url: str) -> tuple[float, float]:
    """Client CPU µs per ``HGET`` of a job record and per ``EVALSHA``, through redis-py's
    asyncio client, 16 tasks at once (run in the environment being measured)."""
    import redis.asyncio as aioredis

    client = aioredis.Redis.from_url(url, max_connections=COMMAND_TASKS)
    try:
        await client.hset("hiredis-ab:job", "record", RECORD)
        script = client.register_script(SCRIPT)

        async def get() -> None:
            for _ in range(COMMANDS_PER_TASK):
                await client.hget("hiredis-ab:job", "record")

        async def update() -> None:
            for _ in range(COMMANDS_PER_TASK):
                await script(keys=["hiredis-ab:job"], args=["running"])

        figures = []
        for task in (get, update):
            await asyncio.gather(*(task() for _ in range(COMMAND_TASKS)))  # warm-up: connections
            start = time.process_time()
            await asyncio.gather(*(task() for _ in range(COMMAND_TASKS)))
            figures.append((time.process_time() - start) / (COMMAND_TASKS * COMMANDS_PER_TASK) * 1e6)
        return figures[0], figures[1]
    finally:
        await client.aclose()


def commands_in(python: str, url: str) -> tuple[float, float]:
    """:func:`commands_cpu` run by the interpreter ``python``."""
    args = [python, str(Path(__file__).resolve()), "--commands", url]
    done = subprocess.run(args, capture_output=True, text=True, timeout=600, check=True)
    get_us, update_us = done.stdout.split()
    return float(get_us), float(update_us)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("with_python", help="python of the environment with hiredis installed")
    parser.add_argument("without_python", help="python of the environment without hiredis")
    parser.add_argument("rounds", type=int, nargs="?", default=7, help="A/B rounds [default: 7]")
    if argv is None and sys.argv[1:2] == ["--commands"]:  # the child of commands_in
        print(*(f"{figure:.2f}" for figure in asyncio.run(commands_cpu(sys.argv[2]))))
        return 0
    args = parser.parse_args(argv)
    if args.rounds < 1:
        parser.error("rounds: must be at least 1")
    pythons = (args.with_python, args.without_python)
    probes = [probe(python) for python in pythons]
    if [available for _, available in probes] != [True, False]:
        parser.error(f"need hiredis in the first environment only; found {probes}")
    settings = Settings()
    load = LoadGen()
    try:
        with Running() as running:
            redis = running.up(RedisServer())
            env = {"BENCH_STORE": "redis", "BENCH_REDIS_URL": redis.url}
            a, b = (running.up(ServerWith(python, "bench.apps:combined", **env)) for python in pythons)
            results = alternate(
                args.rounds,
                lambda: measure([a], lambda: load.run(**jobs_spec(settings, [a.port]))),
                lambda: measure([b], lambda: load.run(**jobs_spec(settings, [b.port]))),
            )
            commands = alternate(
                3, lambda: commands_in(pythons[0], redis.url), lambda: commands_in(pythons[1], redis.url)
            )
    finally:
        load.close()
    for label, (version, _), legs in zip(("with hiredis", "without"), probes, results, strict=True):
        cpu = statistics.median(cpu_per_op(leg) for leg in legs)
        print(
            f"{label:>12} (redis-py {version}): median {median(legs, 'rate'):.0f} jobs/s, "
            f"{cpu:,.0f} µs server CPU per job; legs {[round(leg['rate']) for leg in legs]}"
        )
    rounds = [x["rate"] / y["rate"] if y["rate"] else math.nan for x, y in zip(*results, strict=True)]
    cpus = [cpu_per_op(x) / cpu_per_op(y) for x, y in zip(*results, strict=True)]
    print(f"per round, jobs/s with / without: {[round(r, 3) for r in rounds]}")
    print(f"per round, server CPU per job with / without: {[round(r, 3) for r in cpus]}")
    print(f"with / without hiredis: {median(results[0], 'rate') / median(results[1], 'rate'):.3f}")
    for label, figures in zip(("with hiredis", "without"), commands, strict=True):
        get_us = statistics.median(figure[0] for figure in figures)
        update_us = statistics.median(figure[1] for figure in figures)
        print(f"{label:>12}: client CPU per HGET of a record {get_us:.1f} µs, per EVALSHA {update_us:.1f} µs")
    return 0


if __name__ == "__main__":
    sys.exit(main())
