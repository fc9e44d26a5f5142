"""Compare two checkouts of the core on the job round trip: ``python bench/ab_core.py NEW OLD``.

NEW and OLD are directories holding a ``bifrost_async`` package (e.g. ``git archive HEAD~1
bifrost_async | tar -x -C /tmp/old``). One server runs from each, side by side, and the load
generator alternates between them; prints jobs/s and server CPU per job of each, and the ratios.
This is how a core optimisation's before/after figures are measured.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
from pathlib import Path
from typing import Any

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.harness import (
    LoadGen,
    Server,
    Settings,
    alternate,
    jobs_spec,
    measure,
    median,
    safe_ratio,
    started,
)


def server_from(checkout: Path) -> Server:
    previous = os.environ.get("PYTHONPATH")
    os.environ["PYTHONPATH"] = str(checkout)  # the harness puts a caller's PYTHONPATH first
    try:
        return Server("bench.apps:combined")
    finally:
        if previous is None:
            del os.environ["PYTHONPATH"]
        else:
            os.environ["PYTHONPATH"] = previous


def cpu_per_job(results: list[dict[str, Any]]) -> float:
    return statistics.median(r["server_cpu"] / r["rate"] * 1e6 for r in results if r["rate"])


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
    args = parser.parse_args()
    extra: dict[str, Any] = {"long_poll": 10, "prefer_wait": True} if args.prefer_wait else {}
    settings = Settings(rounds=args.rounds, concurrency=args.concurrency)
    load = LoadGen()
    new, old = server_from(args.new), server_from(args.old)
    with started(new, old, load):
        a, b = alternate(
            settings.rounds,
            lambda: measure([new], lambda: load.run(**jobs_spec(settings, [new.port]), **extra), load),
            lambda: measure([old], lambda: load.run(**jobs_spec(settings, [old.port]), **extra), load),
        )
    for name, r in (("new", a), ("old", b)):
        print(
            f"{name}: {median(r, 'rate'):.0f} jobs/s, {cpu_per_job(r):.0f} µs server CPU/job, "
            f"{median(r, 'polls_per_job'):.2g} polls/job, p50 {median(r, 'p50_ms'):.1f} ms"
        )
    rate, cpu = safe_ratio(median(a, "rate"), median(b, "rate")), safe_ratio(cpu_per_job(a), cpu_per_job(b))
    print(f"new/old: jobs/s {rate:.3f}, CPU/job {cpu:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
