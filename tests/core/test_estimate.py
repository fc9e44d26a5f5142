"""Retry-After from what the service knows (bifrost_async.core.estimate): typical run time per
request type, the job's place in the queue, clamped to whole seconds in [floor, cap]."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from bifrost_async.core.estimate import RetryHints, RunTimes
from bifrost_async.core.jobs import Job, JobStatus

NOW = 1_700_000_000.0


def job(request_type: str, status: JobStatus = JobStatus.PENDING, started: float | None = None) -> Job:
    return Job(
        id="00000000-0000-4000-8000-000000000001",
        request_id="r",
        request_type=request_type,
        status=status,
        created_at=NOW,
        ttl=60,
        started_at=started,
    )


def hints(times: RunTimes, place: int | None = None, *, concurrency: int = 4, cap: int = 30) -> RetryHints:
    return RetryHints(times, lambda job_id: place, concurrency=concurrency, clock=lambda: NOW, cap=cap)


def test_an_unknown_type_says_the_floor() -> None:
    assert hints(RunTimes()).seconds(job("transcription")) == 1
    assert hints(RunTimes(), place=50).seconds(job("transcription")) == 1


def test_a_slow_type_says_more_than_a_fast_one() -> None:
    times = RunTimes()
    times.observe("transcription", 12.0)
    times.observe("embedding", 0.05)
    slow, fast = job("transcription"), job("embedding")
    # half the time left: a 12 s run just queued (place unknown) says 6
    assert hints(times).seconds(slow) == 6 and hints(times).seconds(fast) == 1
    running = job("transcription", JobStatus.PROCESSING, started=NOW - 4.5)
    assert hints(times).seconds(running) == 4  # (12 - 4.5) / 2, rounded up


def test_queue_place_adds_the_runs_ahead() -> None:
    times = RunTimes()
    times.observe("speech", 2.0)
    # place 8 behind 4 workers: two rounds of runs ahead, then its own: 6 s left, says 3
    assert hints(times, place=8, concurrency=4).seconds(job("speech")) == 3
    assert hints(times, place=1, concurrency=4).seconds(job("speech")) == 2  # 2.5 / 2 rounded up


def test_clamped_to_the_cap_and_the_floor() -> None:
    times = RunTimes()
    times.observe("image_generation", 400.0)
    assert hints(times, cap=30).seconds(job("image_generation")) == 30
    assert hints(times, cap=1).seconds(job("image_generation")) == 1  # retry_after_max 1: the old constant
    overrun = job("image_generation", JobStatus.PROCESSING, started=NOW - 900)
    assert hints(times).seconds(overrun) == 1


def test_the_average_follows_recent_runs() -> None:
    times = RunTimes(alpha=0.5)
    times.observe("ocr", 10.0)
    times.observe("ocr", 2.0)
    assert times.typical("ocr") == 6.0
    times.observe("ocr", -1.0)  # a clock step backwards is not a run time
    assert times.typical("ocr") == 6.0


def test_the_types_kept_are_bounded() -> None:
    times = RunTimes(max_types=2)
    for name in ("a", "b", "c"):
        times.observe(name, 1.0)
    assert times.typical("c") is None and times.typical("a") == 1.0


@given(
    typical=st.one_of(st.none(), st.floats(0, 1e9, allow_nan=False)),
    place=st.one_of(st.none(), st.integers(1, 10**6)),
    running=st.booleans(),
    elapsed=st.floats(-1e6, 1e9, allow_nan=False),
    concurrency=st.integers(1, 512),
    floor=st.integers(1, 5),
    extra=st.integers(0, 100),
)
def test_the_header_is_always_a_whole_number_in_bounds(
    typical: float | None,
    place: int | None,
    running: bool,
    elapsed: float,
    concurrency: int,
    floor: int,
    extra: int,
) -> None:
    times = RunTimes()
    if typical is not None:
        times.observe("chat_completion", typical)
    cap = floor + extra
    rule = RetryHints(
        times, lambda job_id: place, concurrency=concurrency, clock=lambda: NOW, floor=floor, cap=cap
    )
    status = JobStatus.PROCESSING if running else JobStatus.PENDING
    the_job = job("chat_completion", status, started=NOW - elapsed if running else None)
    header = rule.header(the_job)
    assert header.isdigit() and floor <= int(header) <= cap
    assert int(header) == rule.seconds(the_job)
