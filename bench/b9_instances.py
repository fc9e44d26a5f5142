"""9. Several instances on one Redis (issue 14): jobs/s with 1, 2 and 3 ``bifrost-async serve``.

The real proxy (:class:`bench.instances.Instance`: ``bifrost-async serve --store redis`` plus
``run.py --serve-args``) in front of the bench upstream (``bench.apps:bare`` in uvicorn), all on
one ``redis-server``, at ``settings.concurrency`` clients and four times as many, each instance
with ``--concurrency 16`` (:data:`BASE_ARGS`). Two ways to send the load:

- ``spread``: each client submits on the instances in turn and polls on the next one;
- ``one``: every submit goes to the first instance, polls go to all of them in turn. This is
  the distributed queue's point: with today's local queue only the first instance runs jobs
  (its neighbours answer polls); with ``--queue redis`` all of them should.

Every arm is measured alternately in the same run (1 instance; 2 and 3 spread; 2 and 3 to one);
each row is N instances against 1. The split of runs is each instance's share of the jobs it ran
to ``completed`` during the legs of that arm, from its ``/metrics``.

By default this runs with the serve arguments given (none: today's local queue); when this core
has ``--queue`` and the arguments do not name it, the same rows are measured again with
``--queue redis``, and when it does not, one row says so.
"""

from __future__ import annotations

import dataclasses
import importlib.util
from collections.abc import Callable
from typing import Any

from .harness import (
    LoadGen,
    RedisServer,
    Row,
    Running,
    Server,
    Settings,
    Skip,
    alternate_many,
    fmt,
    jobs_spec,
    measure,
    median,
    safe_ratio,
)
from .instances import Instance, queue_available, require_queue, wants_queue

NAME = "instances"
TITLE = "9. 1, 2 and 3 instances on one Redis"
#: The arms: (instances used, submits all on the first).
#: Serve arguments before the given ones (which may override them): enough runners per instance
#: that the upstream round trip of each job (the ``http`` provider) does not cap an instance at
#: its default 4 jobs at once; measured: 1 instance, 16 clients, ~240 jobs/s with 4, ~360 with 16.
BASE_ARGS = ("--concurrency", "16")
ARMS = {
    "1": (1, False),
    "2 spread": (2, False),
    "3 spread": (3, False),
    "2 one": (2, True),
    "3 one": (3, True),
}


def run(settings: Settings, load: LoadGen) -> list[Row]:
    if importlib.util.find_spec("bifrost_async_redis") is None:
        raise Skip("the Redis store plugin is not installed (pip install -e plugins/redis)")
    variants = [settings.serve_args]
    if wants_queue(settings.serve_args):
        require_queue()
    rows: list[Row] = []
    if not wants_queue(settings.serve_args):
        if queue_available():
            variants.append((*settings.serve_args, "--queue", "redis"))
        else:
            rows.append(
                Row(
                    NAME,
                    "1, 2, 3 instances with `--queue redis`",
                    "skipped: --queue not available",
                    note="`bifrost-async serve --help` does not mention --queue (issue 14's queue)",
                )
            )
    measured: list[Row] = []
    for extra in variants:
        measured += measure_variant(settings, load, extra)
    return measured + rows


def measure_variant(settings: Settings, load: LoadGen, extra: tuple[str, ...]) -> list[Row]:
    """The rows of one set of serve arguments."""
    label = " ".join(extra) if extra else "local queue"
    rows: list[Row] = []
    with Running() as running:
        redis = running.up(RedisServer())
        upstream = running.up(Server("bench.apps:bare", ready_path="/ping"))
        args = (*BASE_ARGS, *extra)
        instances = [running.up(Instance(upstream.port, redis.url, args)) for _ in range(3)]
        for concurrency in (settings.concurrency, settings.concurrency * 4):
            sized = dataclasses.replace(settings, concurrency=concurrency)
            splits: dict[str, list[float]] = {arm: [0.0] * 3 for arm in ARMS}

            def leg(
                arm: str, sized: Settings = sized, splits: dict[str, list[float]] = splits
            ) -> Callable[[], dict[str, Any]]:
                count, submit_first = ARMS[arm]
                used = instances[:count]

                def action() -> dict[str, Any]:
                    before = [instance.completed() for instance in instances]
                    spec = jobs_spec(sized, [instance.port for instance in used])
                    result = measure(used, lambda: load.run(**spec, submit_first=submit_first), backend=redis)
                    after = [instance.completed() for instance in instances]
                    for n in range(3):
                        splits[arm][n] += after[n] - before[n]
                    return result

                return action

            results = alternate_many(settings.rounds, {arm: leg(arm) for arm in ARMS})
            base = results["1"]
            for arm in ("2 spread", "3 spread", "2 one", "3 one"):
                count, submit_first = ARMS[arm]
                a = results[arm]
                total = sum(splits[arm]) or 1.0
                split = "/".join(f"{share / total:.0%}" for share in splits[arm][:count])
                how = "all submits to instance 1, polls on all" if submit_first else "submits spread"
                rows.append(
                    Row(
                        NAME,
                        f"{count} instances vs 1 ({label}; {how}): jobs/s at {concurrency} clients",
                        fmt(median(a, "rate"), "jobs/s"),
                        fmt(median(base, "rate"), "jobs/s"),
                        safe_ratio(median(a, "rate"), median(base, "rate")),
                        "(report)",
                        note=f"runs per instance {split}; instances' CPU {median(a, 'server_cpu'):.0%} vs "
                        f"{median(base, 'server_cpu'):.0%} of a core, redis-server "
                        f"{median(a, 'backend_cpu'):.0%}; p50 {fmt(median(a, 'p50_ms'), 'ms')} vs "
                        f"{fmt(median(base, 'p50_ms'), 'ms')}; errors {sum(r['errors'] for r in a)}",
                    )
                )
    return rows
