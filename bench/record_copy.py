"""How a job is copied and how its stored record is made: ``python -m bench.record_copy [ROUNDS]``.

Issue 15 found twins in the job model: ``Job.copy`` beside ``memory._copy``, and ``to_record``
(``dataclasses.asdict``: a deep copy) beside ``to_record_json`` (the same JSON text from a shallow
dict). This keeps the forms that stood side by side, as they were, and times each on two jobs
the runner writes: a pending one, and one completed with a ~1 KB JSON answer (built by the
runner's own ``outcome_from_response`` and ``apply_outcome``). The forms are timed in the same
run, alternating (A, B, C, ... then the next round reversed), and each figure is the median of
the rounds, in nanoseconds per call. It also checks that every record form gives the same JSON
text byte for byte, so that what the stores persist cannot change.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import statistics
import sys
import time
import timeit
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.append(str(Path(__file__).resolve().parent.parent))  # after PYTHONPATH

from bench.apps import KB_TEXT
from bifrost_async.core.outcome import CapturedResponse, apply_outcome, outcome_from_response
from bifrost_async.errors import model_extra_fields
from bifrost_async.jobs import Job, JobStatus, new_job_id

MODEL = "openai/gpt-4o-mini"
BODY = json.dumps({"model": MODEL, "text": KB_TEXT}).encode()
HEADERS = [(b"content-type", b"application/json"), (b"content-length", str(len(BODY)).encode())]
FIELD_NAMES = tuple(field.name for field in dataclasses.fields(Job))


def jobs() -> dict[str, Job]:
    """A pending job and a completed one, as the runner stores them."""
    now = time.time()
    extra = model_extra_fields(MODEL, "chat_completion")
    pending = Job(
        id=new_job_id(),
        request_id=new_job_id(),
        request_type="chat_completion",
        status=JobStatus.PENDING,
        created_at=now,
        ttl=3600,
        owner="digest-of-someone",
        extra_fields=dict(extra),
        metadata={"webhook": "billing"},
    )
    done = dataclasses.replace(pending, extra_fields=dict(extra), metadata=dict(pending.metadata))
    done.status, done.started_at, done.worker = JobStatus.PROCESSING, now, "bench-host:1"
    apply_outcome(done, outcome_from_response(CapturedResponse(200, HEADERS, BODY), extra), now)
    return {"pending": pending, "completed 1 KB": done}


# -- the copies -------------------------------------------------------------------------------


def memory_copy(job: Job) -> Job:
    """``memory._copy`` as it was: a module function doing what ``Job.copy`` does."""
    clone = object.__new__(type(job))
    clone.__dict__.update(job.__dict__)
    return clone


COPIES: dict[str, Callable[[Job], Any]] = {
    "Job.copy() (method)": lambda job: job.copy(),
    "memory._copy(job) (function)": memory_copy,
    "copy.copy(job)": copy.copy,
    "dataclasses.replace(job)": dataclasses.replace,
}

# -- the records ------------------------------------------------------------------------------


def asdict_record(job: Job) -> dict[str, Any]:
    """``to_record`` as it was: ``dataclasses.asdict`` (a deep copy of every nested value)."""
    record = dataclasses.asdict(job)
    record["status"] = job.status.value
    return record


def shallow_record(job: Job) -> dict[str, Any]:
    """The record ``to_record_json`` dumped: the job's own values, no copies."""
    record = {name: getattr(job, name) for name in FIELD_NAMES}
    record["status"] = job.status.value
    return record


def dumps(record: dict[str, Any]) -> str:
    return json.dumps(record, separators=(",", ":"))


RECORDS: dict[str, Callable[[Job], Any]] = {
    "dict: asdict (old to_record)": asdict_record,
    "dict: shallow": shallow_record,
    "JSON: dumps(asdict record)": lambda job: dumps(asdict_record(job)),
    "JSON: dumps(shallow record) (old to_record_json)": lambda job: dumps(shallow_record(job)),
    "JSON: Job.to_record_json() (this tree)": lambda job: job.to_record_json(),
    "dict: Job.to_record() (this tree)": lambda job: job.to_record(),
}


def measure(forms: dict[str, Callable[[Job], Any]], job: Job, rounds: int, number: int) -> dict[str, float]:
    """Median ns per call of each form, alternating forms within each round."""
    samples: dict[str, list[float]] = {name: [] for name in forms}
    names = list(forms)
    for round_ in range(rounds):
        for name in names if round_ % 2 == 0 else reversed(names):
            form = forms[name]
            seconds = timeit.timeit(lambda form=form: form(job), number=number)  # type: ignore[misc]
            samples[name].append(seconds / number * 1e9)
    return {name: statistics.median(values) for name, values in samples.items()}


def main() -> None:
    rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 15
    for label, job in jobs().items():
        texts = {dumps(asdict_record(job)), dumps(shallow_record(job)), job.to_record_json()}
        assert len(texts) == 1, "the record forms disagree: the stored format would change"
        assert Job.from_record(json.loads(job.to_record_json())) == job
        print(f"## {label} job ({len(job.to_record_json())} bytes of record JSON)")
        for title, forms, number in (("copy", COPIES, 20_000), ("record", RECORDS, 5_000)):
            figures = measure(forms, job, rounds, number)
            for name, ns in figures.items():
                print(f"{title:6} {name:52} {ns:9,.0f} ns")
        print()


if __name__ == "__main__":
    main()
