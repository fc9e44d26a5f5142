"""The benchmarks keep working: ``python bench/run.py --smoke`` runs every one at tiny sizes.

No timing is asserted here; the figures live in bench/RESULTS.md. The last tests pin the
behaviour of the fast paths the benchmarks led to. A benchmark whose optional
dependency (arq, saq, the Redis or SQLite plugin, redis-server, the distributed queue's
``serve --queue``) is missing must be skipped with its reason, and every other one must still run.
"""

from __future__ import annotations

import dataclasses
import glob
import importlib.util
import random
import shutil
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest

from bench.harness import GOALS, Row
from bench.report import goal_cells, goal_markdown, text_table
from bifrost_async.builtin.memory import memory_store
from bifrost_async.jobs import Job, JobStatus, new_job_id, rfc3339
from bifrost_async.store import StoreContext

ROOT = Path(__file__).resolve().parents[2]
ALWAYS = ("passthrough", "roundtrip", "submit", "memory")


@pytest.mark.slow
def test_smoke_run_prints_every_benchmark() -> None:
    done = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "run.py"), "--smoke"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=240,  # about 15 s on an idle machine: only a bound on a hang
    )
    assert done.returncode == 0, done.stdout + done.stderr
    table, goals = done.stdout.split("\n\n", 1)
    assert table.splitlines()[0].split()[:3] == ["benchmark", "metric", "A"]
    rows = {line.split()[0] for line in table.splitlines()[2:] if line and not line.startswith(" ")}
    for name in ALWAYS:
        assert name in rows, table
    has_redis = shutil.which("redis-server") is not None
    optional = {
        "redis": has_redis and importlib.util.find_spec("bifrost_async_redis") is not None,
        "arq": has_redis and all(importlib.util.find_spec(m) for m in ("arq", "saq", "bifrost_async_redis")),
        "sqlite": importlib.util.find_spec("bifrost_async_sqlite") is not None,
        "postgres": importlib.util.find_spec("bifrost_async_postgres") is not None
        and bool(glob.glob("/usr/lib/postgresql/*/bin/initdb") or shutil.which("initdb")),
    }
    # Benchmarks 9 and 10 run the real proxy; 10 needs issue 14's distributed queue (serve --queue).
    has_queue = "--queue " in _serve_help()
    optional["instances"] = optional["redis"]
    optional["redelivery"] = optional["redis"] and has_queue
    if optional["instances"] and not has_queue:
        assert "skipped: --queue not available" in table, table
    for name, runnable in optional.items():
        if runnable:
            assert name in rows, table
        else:
            assert f"SKIPPED {name}:" in table, table
    # issue 16's goal table: a line per goal, decided by its row when its benchmark ran
    assert goals.splitlines()[0].startswith("goal (issue 16)"), goals
    for bench, text in GOALS.values():
        [line] = [line for line in goals.splitlines() if line.startswith(text)]
        ran = bench in ALWAYS or optional[bench]
        verdict = line.split()[-1] if ran else line.split("  ")[-1].strip()
        assert verdict in ("met", "missed") if ran else verdict.startswith("not run: "), line


def test_goal_table_has_a_line_per_goal_from_its_deciding_row() -> None:
    rows = [
        Row("roundtrip", "jobs/s", "10 jobs/s", "40 req/s", 0.25, "≥ 0.5", False, goal_key="roundtrip"),
        Row("roundtrip", "CPU", "300 µs", "200 µs", 1.5, "≤ 2", True, goal_key="cpu"),
        Row("roundtrip", "p50", "1 ms", "1 ms", 1.0),
    ]
    lines = goal_cells(rows, {"arq": "not installed: arq"})
    assert [line[0] for line in lines] == [text for _, text in GOALS.values()]
    by_goal = dict(zip(GOALS, lines, strict=True))
    assert by_goal["roundtrip"][1:] == ("≥ 0.5", "0.25", "10 jobs/s vs 40 req/s", "missed")
    assert by_goal["cpu"][1:] == ("≤ 2", "1.50", "300 µs vs 200 µs", "met")
    assert by_goal["arq"][-1] == by_goal["saq"][-1] == "not run: not installed: arq"
    assert by_goal["redis"][-1] == "not run"  # not asked for (--only), not skipped
    markdown = goal_markdown(rows, {})
    assert "| **missed** |" in markdown and "| **met** |" in markdown
    assert len(markdown.splitlines()) == 2 + len(GOALS)
    text = text_table(rows, {})
    assert text.split("\n\n")[1].splitlines()[0].startswith("goal (issue 16)")


@pytest.mark.parametrize("script", ["inprocess.py", "retry_after.py"])
def test_the_in_process_benchmarks_run(script: str) -> None:
    """The scripts ``run.py`` does not drive: their smallest run ends and prints its figures."""
    args = ["200", "--unfinished-only"] if script == "inprocess.py" else ["--clients", "2", "--jobs", "1"]
    if script == "retry_after.py":
        args += ["--low", "0", "--high", "0.01"]
    done = subprocess.run(
        [sys.executable, str(ROOT / "bench" / script), *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,  # a few seconds: only a bound on a hang
    )
    assert done.returncode == 0, done.stderr
    assert ("poll of a queued job" if script == "inprocess.py" else "polls/job") in done.stdout


def _serve_help() -> str:
    done = subprocess.run(
        [sys.executable, "-m", "bifrost_async", "serve", "--help"], capture_output=True, text=True, timeout=60
    )
    return done.stdout


# -- the fast paths the benchmarks led to keep their behaviour ---------------------------------


def _strftime_rfc3339(timestamp: float) -> str:
    """The formatting rfc3339 had before it moved to isoformat."""
    moment = datetime.fromtimestamp(timestamp, tz=UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def test_rfc3339_matches_the_strftime_formatting() -> None:
    rng = random.Random(6)
    stamps = [0.0, 0.0005, 0.9994999, 0.9995, 0.9999996, 1.2345, 1e9 + 0.0005, 1_764_000_000.9999996]
    stamps += [rng.uniform(0, 4e9) for _ in range(20_000)]
    for stamp in stamps:
        assert rfc3339(stamp) == _strftime_rfc3339(stamp), stamp


async def test_memory_store_copies_are_independent_and_equal() -> None:
    store = memory_store(StoreContext(clock=time.time, max_jobs=10, options={}))
    await store.start()
    job = Job(
        id=new_job_id(),
        request_id="r",
        request_type="embedding",
        status=JobStatus.PENDING,
        created_at=time.time(),
        ttl=60,
        extra_fields={"request_type": "embedding"},
    )
    await store.create(job)
    job.status = JobStatus.PROCESSING  # the caller's object is not the stored one
    stored = await store.get(job.id)
    assert stored is not None and type(stored) is Job
    assert stored.status is JobStatus.PENDING
    stored.ttl = 1
    again = await store.get(job.id)
    assert again is not None and again.ttl == 60 and again is not stored
    assert dataclasses.asdict(again) == {**dataclasses.asdict(stored), "ttl": 60}
    await store.close()
