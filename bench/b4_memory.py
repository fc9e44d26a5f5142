"""4. Memory: bytes per stored job in the memory store, and peak RSS under 20 large uploads.

Bytes per job: RSS growth of a child process (``bench/memjobs.py``) holding 100,000 completed
jobs with ~1 KB results written the way the runner writes them, minus nothing: the figure is the
whole cost of a kept job. The same process holding only the results gives the result's share; a
second child runs 20,000 jobs through the middleware and the runner in-process as a cross-check.

Peak RSS: a server (``bench.apps:combined``, memory store) has its peak RSS reset (Linux
``clear_refs``), then takes 20 concurrent 50 MB multipart submits; the load generator then waits
for every job to finish. Growth is ``VmHWM`` after minus ``VmRSS`` before, so it covers the
uploads in flight and the jobs replaying them into the app. The same uploads sent to the
synchronous endpoint are the reference.
"""

from __future__ import annotations

import json
import subprocess
import sys

from .harness import ROOT, LoadGen, Row, Server, Settings, env_for, fmt, mib, started

NAME = "memory"
TITLE = "4. memory"
MB = 1024 * 1024


def child(mode: str, n: int) -> dict[str, float]:
    out = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "memjobs.py"), mode, str(n)],
        env=env_for(),
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
        timeout=300,
    ).stdout
    result: dict[str, float] = json.loads(out.strip().splitlines()[-1])
    return result


def run(settings: Settings, load: LoadGen) -> list[Row]:
    n_store, n_runner = (2_000, 500) if settings.smoke else (100_000, 20_000)
    uploads, size = (4, 1 * MB) if settings.smoke else (20, 50 * MB)
    store, results, runner = child("store", n_store), child("results", n_store), child("runner", n_runner)
    per_job, per_result = store["per_job"], results["per_job"]
    growth = {}
    server = Server("bench.apps:combined")
    with started(server):
        for label, path, expect in (
            ("async", "/v1/async/audio/transcriptions", 202),
            ("sync", "/bare/v1/audio/transcriptions", 200),
        ):
            server.reset_peak()
            before = server.rss()
            spec = {"ports": [server.port], "path": path, "size": size, "count": uploads, "expect": expect}
            load.run(mode="upload", concurrency=uploads, wait_done=expect == 202, **spec)
            growth[label] = server.peak_rss() - before
    limit = 100 * MB
    return [
        Row(
            NAME,
            f"bytes per stored completed job, 1 KB result ({n_store:,} jobs, RSS growth)",
            fmt(per_job, "B"),
            goal="(report)",
            note=f"of which the parsed result alone {fmt(per_result, 'B')}; through the runner "
            f"in-process ({n_runner:,} jobs): {fmt(runner['per_job'], 'B')}/job",
        ),
        Row(
            NAME,
            f"peak RSS growth, {uploads} concurrent {size // MB} MB uploads: submits + jobs vs sync endpoint",
            mib(growth["async"]),
            mib(growth["sync"]),
            growth["async"] / growth["sync"] if growth["sync"] > 0 else None,
            "A < 100 MiB",
            growth["async"] < limit,
        ),
    ]
