"""10. Time from ``SIGKILL`` to the re-delivered job's completion (issue 14), for several leases.

Two ``bifrost-async serve --store redis --queue redis --lease-seconds L`` instances (plus
``run.py --serve-args``) on one ``redis-server``, in front of ``bench.apps:hold_once``: the first
attempt of a job hangs in the upstream, a second one is answered at once. One trial: submit the
job, wait until the upstream holds it, find the instance running it (its ``/metrics``:
``jobs_running``), ``SIGKILL`` that instance, then poll the job on the other one every
``POLL_INTERVAL`` until it ends. The figure is the time from the kill to the first poll that
sees it ``completed`` (so it includes up to one poll interval); the note gives every trial, how
the jobs ended and how many times the upstream saw each (2: the re-run).

Without the distributed queue (``bifrost-async serve --help`` does not mention ``--queue``) this
is skipped: today such a job fails as "worker lost" once its lease runs out, which
``python -m bench.b10_redelivery --baseline`` measures the same way.
"""

from __future__ import annotations

import argparse
import json
import shlex
import statistics
import sys
import time
import urllib.error
import urllib.request
import uuid
from typing import Any

from .apps import HOLD_MODEL
from .harness import LoadGen, RedisServer, Row, Running, Server, Settings, Skip, fmt
from .instances import Instance, require_queue, wants_queue
from .report import text_table

NAME = "redelivery"
TITLE = "10. SIGKILL to re-delivered completion"
#: Lease lengths measured (seconds), and in a smoke run.
LEASES = (2.0, 5.0, 10.0)
SMOKE_LEASES = (1.0,)
#: Trials per lease (one in a smoke run).
TRIALS = 3
#: Seconds between the polls that watch the job after the kill (the figure's resolution).
POLL_INTERVAL = 0.02
#: Bounds on a hang (not timings): the upstream getting the job, the job ending after the kill.
ARRIVAL_LIMIT = 60.0
END_LIMIT_FACTOR = 10.0


def http_json(port: int, method: str, path: str, body: dict[str, Any] | None = None) -> tuple[int, Any, Any]:
    """One request to ``127.0.0.1:port``; its status, parsed JSON body and headers."""
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(f"http://127.0.0.1:{port}{path}", data=data, method=method)
    if data is not None:
        request.add_header("content-type", "application/json")
    try:
        with urllib.request.urlopen(request, timeout=30) as answer:
            return answer.status, json.loads(answer.read() or b"null"), answer.headers
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"null"), exc.headers


def wait_for(check: Any, limit: float, what: str) -> Any:
    """Call ``check`` every ``POLL_INTERVAL`` until it returns something true; fail after ``limit``."""
    deadline = time.monotonic() + limit
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise RuntimeError(f"gave up waiting for {what} after {limit:g} s")
        time.sleep(POLL_INTERVAL)


def trial(upstream: Server, instances: list[Instance], lease: float) -> dict[str, Any]:
    """One job held, its instance killed, the time until the other instance reports it ended."""
    key = uuid.uuid4().hex
    status, _, headers = http_json(
        instances[0].port, "POST", "/v1/async/embeddings", {"model": HOLD_MODEL, "input": key}
    )
    if status != 202:
        raise RuntimeError(f"submit answered {status}")
    location = headers["location"]
    wait_for(
        lambda: http_json(upstream.port, "GET", f"/arrivals/{key}")[1]["arrivals"] >= 1,
        ARRIVAL_LIMIT,
        "the upstream to receive the job",
    )
    holder = wait_for(
        lambda: next((i for i in instances if i.running() >= 1), None), ARRIVAL_LIMIT, "a running job"
    )
    survivor = next(i for i in instances if i is not holder)
    killed_at = time.monotonic()
    holder.proc.kill()
    holder.proc.wait()

    def ended() -> dict[str, Any] | None:
        status, body, _ = http_json(survivor.port, "GET", location)
        return body if status == 200 else None

    body = wait_for(ended, lease * END_LIMIT_FACTOR + ARRIVAL_LIMIT, "the job to end")
    seconds = time.monotonic() - killed_at
    runs = http_json(upstream.port, "GET", f"/arrivals/{key}")[1]["arrivals"]
    return {"seconds": seconds, "status": body.get("status"), "runs": runs}


def run(settings: Settings, load: LoadGen) -> list[Row]:
    require_queue()
    extra = (
        settings.serve_args
        if wants_queue(settings.serve_args)
        else (*settings.serve_args, "--queue", "redis")
    )
    leases, trials = (SMOKE_LEASES, 1) if settings.smoke else (LEASES, TRIALS)
    return measure_leases(extra, leases, trials)


def measure_leases(extra: tuple[str, ...], leases: tuple[float, ...], trials: int) -> list[Row]:
    """One row per lease, each of ``trials`` kills, the instances started with ``extra``."""
    rows: list[Row] = []
    with Running() as running:
        redis = running.up(RedisServer())
        upstream = running.up(Server("bench.apps:hold_once", ready_path="/ping"))
        for lease in leases:
            results = []
            for _ in range(trials):
                with Running() as pair:
                    args = (*extra, "--lease-seconds", f"{lease:g}")
                    instances = [pair.up(Instance(upstream.port, redis.url, args)) for _ in range(2)]
                    results.append(trial(upstream, instances, lease))
            completed = [r["seconds"] for r in results if r["status"] == "completed"]
            label = "serve " + " ".join(extra) if wants_queue(extra) else "local queue: no re-delivery"
            ends = ", ".join(f"{r['seconds']:.2f} s {r['status']} ({r['runs']} runs)" for r in results)
            rows.append(
                Row(
                    NAME,
                    f"seconds from SIGKILL to the re-delivered job's completion, lease {lease:g} s ({label})",
                    fmt(statistics.median(completed), "s") if completed else "none completed",
                    goal="(report)",
                    note=f"{len(completed)}/{len(results)} completed; trials: {ends}; 2 instances, "
                    f"polled every {POLL_INTERVAL * 1000:g} ms",
                )
            )
    if not rows:
        raise Skip("no lease measured")
    return rows


def main(argv: list[str] | None = None) -> int:
    """``python -m bench.b10_redelivery [--baseline]``: benchmark 10 alone, full size. With
    ``--baseline``, the same trials with today's local queue (no ``--queue``): the job is not
    re-delivered but fails as "worker lost" once its lease runs out, and the time to that end is
    what the distributed queue is measured against."""
    parser = argparse.ArgumentParser(description="benchmark 10 alone (see the module docstring)")
    parser.add_argument("--baseline", action="store_true", help="run with the local queue (no --queue)")
    parser.add_argument(
        "--serve-args", default="", metavar="ARGS", help="extra serve arguments, shell-quoted"
    )
    parser.add_argument("--trials", type=int, default=TRIALS, help=f"kills per lease [default: {TRIALS}]")
    args = parser.parse_args(argv)
    if args.trials < 1:
        parser.error("--trials: must be at least 1")
    try:
        extra = tuple(shlex.split(args.serve_args))
    except ValueError as exc:
        parser.error(f"--serve-args: {exc}")
    try:
        if not args.baseline:
            require_queue()
            extra = extra if wants_queue(extra) else (*extra, "--queue", "redis")
        rows = measure_leases(extra, LEASES, args.trials)
    except Skip as exc:
        print(f"skipped: {exc}")
        return 0
    print(text_table(rows, {}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
