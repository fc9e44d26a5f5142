"""Our Redis store's job round trip under two Python environments, alternated in one run.

``python -m bench.python_ab OTHER_PYTHON [ROUNDS]`` serves ``bench.apps:combined`` with the Redis
store once with this interpreter and once with ``OTHER_PYTHON`` (another virtualenv of the same
checkout, say with another redis-py), on one ``redis-server``, and alternates the two under the
round trip of benchmark 2 (16 clients, 5 ms poll cap). It was written because ``.[bench]``
installs arq, which requires redis-py < 6, while the plain install gets the newest redis-py:
the figures of benchmarks 5, 6 and 9 depend on which one the store runs on.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make the repository root importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.harness import (
    ROOT,
    LoadGen,
    Process,
    RedisServer,
    Running,
    Server,
    Settings,
    alternate,
    env_for,
    jobs_spec,
    listening_socket,
    measure,
    median,
    median_cpu_per_op,
)


class ServerWith(Server):
    """``bench/serve.py`` run by the interpreter ``python``."""

    def __init__(self, python: str, factory: str, **env: str) -> None:
        self.sock = listening_socket()
        self.port = self.sock.getsockname()[1]
        fd = self.sock.fileno()
        args = [python, str(ROOT / "bench" / "serve.py"), factory, str(fd)]
        Process.__init__(self, args, env_for(**env), pass_fds=(fd,))
        self.wait_ready("/bare/ping")


def redis_py_version(python: str) -> str:
    done = subprocess.run(
        [python, "-c", "import redis; print(redis.__version__)"], capture_output=True, text=True, timeout=60
    )
    return done.stdout.strip() or "?"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("other_python", help="the other environment's python executable")
    parser.add_argument("rounds", type=int, nargs="?", default=7, help="A/B rounds [default: 7]")
    args = parser.parse_args(argv)
    if args.rounds < 1:
        parser.error("rounds: must be at least 1")
    settings = Settings()
    load = LoadGen()
    try:
        with Running() as running:
            redis = running.up(RedisServer())
            env = {"BENCH_STORE": "redis", "BENCH_REDIS_URL": redis.url}
            pythons = (sys.executable, args.other_python)
            a, b = (running.up(ServerWith(python, "bench.apps:combined", **env)) for python in pythons)
            results = alternate(
                args.rounds,
                lambda: measure([a], lambda: load.run(**jobs_spec(settings, [a.port]))),
                lambda: measure([b], lambda: load.run(**jobs_spec(settings, [b.port]))),
            )
    finally:
        load.close()
    for python, legs in zip(pythons, results, strict=True):
        cpu = median_cpu_per_op(legs)
        print(
            f"redis-py {redis_py_version(python)} ({python}): median {median(legs, 'rate'):.0f} jobs/s, "
            f"{cpu:,.0f} µs server CPU per job; legs {[round(leg['rate']) for leg in legs]}"
        )
    print(f"A/B {median(results[0], 'rate') / median(results[1], 'rate'):.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
