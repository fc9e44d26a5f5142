"""9. Several instances on one Redis (issue 14): jobs/s with 1, 2 and 3 ``bifrost-async serve``.

The real proxy (:class:`bench.instances.Instance`: ``bifrost-async serve --store redis`` plus
``run.py --serve-args``) in front of the bench upstream (``bench.apps:bare`` in uvicorn), all on
one ``redis-server``, at ``settings.concurrency`` clients and four times as many, each instance
with ``--concurrency 16`` (:data:`BASE_ARGS`). Two ways to send the load:

- ``spread``: each client submits on the instances in turn and polls on the next one;
- ``one``: every submit goes to the first instance, polls go to all of them in turn. This is
  the distributed queue's point: with today's local queue only the first instance runs jobs
  (its neighbours answer polls); with ``--queue redis`` all of them should.

Every arm is measured in each round of the same run, with only its own instances up (see
:func:`measure_variant`); each row is N instances against 1. The split of runs is each
instance's share of the jobs it ran to ``completed`` during the legs of that arm, from its
``/metrics``.

By default this runs with the serve arguments given (none: today's local queue); when this core
has ``--queue`` and the arguments do not name it, the same rows are measured again with
``--queue redis``, and when it does not, one row says so.
"""

from __future__ import annotations

import dataclasses
import importlib.util
from typing import Any

from .harness import (
    LoadGen,
    RedisServer,
    Row,
    Running,
    Server,
    Settings,
    Skip,
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
    """The rows of one set of serve arguments.

    Only the instances of an arm run while it is measured: with a distributed queue an idle
    instance takes work too, so "2 instances" must not have a third one up. Each round therefore
    starts 1, 2, then 3 fresh instances (3, 2, 1 on odd rounds), measures that group's arms at
    each client count, and stops it (SIGTERM)."""
    label = " ".join(extra) if extra else "local queue"
    concurrencies = (settings.concurrency, settings.concurrency * 4)
    results: dict[tuple[str, int], list[dict[str, Any]]] = {}
    splits: dict[tuple[str, int], list[float]] = {}
    with Running() as running:
        redis = running.up(RedisServer())
        upstream = running.up(Server("bench.apps:bare", ready_path="/ping"))
        args = (*BASE_ARGS, *extra)
        for round_ in range(settings.rounds):
            for count in (1, 2, 3) if round_ % 2 == 0 else (3, 2, 1):
                with Running() as group:
                    instances = [group.up(Instance(upstream.port, redis.url, args)) for _ in range(count)]
                    for concurrency in concurrencies:
                        sized = dataclasses.replace(settings, concurrency=concurrency)
                        for arm, (arm_count, submit_first) in ARMS.items():
                            if arm_count != count:
                                continue
                            key = (arm, concurrency)
                            before = [instance.completed() for instance in instances]
                            spec = {
                                **jobs_spec(sized, [i.port for i in instances]),
                                "submit_first": submit_first,
                            }
                            result = measure(instances, lambda spec=spec: load.run(**spec), backend=redis)
                            after = [instance.completed() for instance in instances]
                            results.setdefault(key, []).append(result)
                            share = splits.setdefault(key, [0.0] * count)
                            for n in range(count):
                                share[n] += after[n] - before[n]
    rows: list[Row] = []
    for concurrency in concurrencies:
        base = results[("1", concurrency)]
        for arm in ("2 spread", "3 spread", "2 one", "3 one"):
            count, submit_first = ARMS[arm]
            a = results[(arm, concurrency)]
            total = sum(splits[(arm, concurrency)]) or 1.0
            split = "/".join(f"{share / total:.0%}" for share in splits[(arm, concurrency)])
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
