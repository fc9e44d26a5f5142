"""Cheap polls: each job's answer encoded once per state, and pacing of polls that come early.

A poll of an unchanged job used to rebuild and re-encode the same JSON every time (``to_public``,
three RFC 3339 timestamps, ``json.dumps``: ~20-100 µs, more than the store read), and a client
polling every few milliseconds made the server answer the same 202 hundreds of times while the
job waited behind those very polls at every event-loop hop (bench/NOTES.md, "Poll storms").

:class:`PollAnswers` keeps, per job id, the last answer's bytes and headers keyed by the job's
status, and when that answer was given. It never decides *whether* a poll may be answered: the
service's poll (owner check, type, expiry, orphan check) runs for every poll, on the job as the
store has it now, and only then is the answer looked up. The key is sound because a job's
public body is a function of its id and status alone: ``id``, ``request_id`` and ``created_at``
never change, a job's status only moves forward, and a terminal record is never rewritten (the
store contract's ``may_move``), so ``completed_at``, ``expires_at``, ``status_code``, ``result``
and ``error`` are fixed once the status is terminal. A status change is a cache miss.

Pacing (``AsyncJobsConfig.poll_pacing``): a poll of an unfinished job that arrives sooner than
``poll_pacing`` seconds after the job's previous answer (its submit or poll) is held until the job
ends, or is deleted, or the interval has passed, then answered from the store as it is then.
Clients that honour ``Retry-After`` never wait; a client polling every few milliseconds gets one
answer per interval, at once when its job ends: polls per job stay near one under a poll storm.

The table is bounded (entries and bytes, least recently used out first) and per process; an
answer larger than :data:`MAX_ANSWER_BYTES` is not kept (it is encoded per poll, as before).
"""

from __future__ import annotations

import collections
from typing import Any

from bifrost_async.core.jobs import Job, JobStatus
from bifrost_async.http.respond import encode_json

#: Jobs whose answers are kept, at most.
MAX_ENTRIES = 10_000
#: Bytes of kept answers, at most (the memory this table may hold beyond its entries).
MAX_BYTES = 32 * 1024 * 1024
#: A larger answer (a big result) is encoded again for each poll rather than kept.
MAX_ANSWER_BYTES = 256 * 1024

RawHeaders = list[tuple[bytes, bytes]]


class Answer:
    """One job's last answer: for which status, its HTTP status, headers and body, and when
    (the event loop's clock) it was last given."""

    __slots__ = ("answered_at", "body", "code", "headers", "status")

    def __init__(self, status: JobStatus, code: int, headers: RawHeaders, body: bytes, at: float) -> None:
        self.status = status
        self.code = code
        self.headers = headers
        self.body = body
        self.answered_at = at


def encode_answer(job: Job) -> tuple[int, RawHeaders, bytes]:
    """The contract's poll answer for ``job`` as the HTTP status (200 once it has ended, else
    202), raw headers and the JSON body. A 202's ``Retry-After`` is not among the headers: it
    varies from poll to poll (:class:`~bifrost_async.core.estimate.RetryHints`), and
    :meth:`PollAnswers.answer` adds it to a copy."""
    body = encode_json(job.to_public())
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    return (200 if job.status.terminal else 202), headers, body


class PollAnswers:
    """The bounded per-process table of encoded poll answers (see the module docstring)."""

    def __init__(
        self,
        *,
        max_entries: int = MAX_ENTRIES,
        max_bytes: int = MAX_BYTES,
        max_answer: int = MAX_ANSWER_BYTES,
    ) -> None:
        self._answers: collections.OrderedDict[str, Answer] = collections.OrderedDict()
        self._bytes = 0
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        self.max_answer = max_answer

    def __len__(self) -> int:
        return len(self._answers)

    @property
    def bytes_held(self) -> int:
        return self._bytes

    def last_answered(self, job_id: str) -> float | None:
        """When (loop clock) this job was last answered, if this process remembers it."""
        answer = self._answers.get(job_id)
        return answer.answered_at if answer is not None else None

    def answered(self, job_id: str, now: float) -> None:
        """Note that ``job_id`` was answered at ``now`` (a submit's 202), without keeping a body."""
        answer = self._answers.get(job_id)
        if answer is not None:
            answer.answered_at = now
            self._answers.move_to_end(job_id)
        else:
            self._put(job_id, Answer(JobStatus.PENDING, 0, [], b"", now))

    def answer(self, job: Job, retry_after: bytes, now: float) -> tuple[int, RawHeaders, bytes]:
        """The answer for ``job`` as the store has it now: the kept one when it was made for the
        same status, else a fresh encoding (kept when small enough); an unfinished job's with
        ``Retry-After: retry_after`` (the header's bytes, as this poll's hint has it). Marks the
        job answered. The headers returned are a new list each time, the caller's to send."""
        kept = self._answers.get(job.id)
        if kept is not None and kept.status is job.status and kept.code:
            kept.answered_at = now
            self._answers.move_to_end(job.id)
            code, headers, body = kept.code, kept.headers, kept.body
        else:
            code, headers, body = encode_answer(job)
            if len(body) <= self.max_answer:
                self._put(job.id, Answer(job.status, code, headers, body, now))
            else:
                self._put(job.id, Answer(job.status, 0, [], b"", now))  # remember the time only
        if code == 202:
            return code, [*headers, (b"retry-after", retry_after)], body
        return code, list(headers), body

    def forget(self, job_id: str) -> None:
        """Drop what is kept for ``job_id`` (it was cancelled or deleted here)."""
        answer = self._answers.pop(job_id, None)
        if answer is not None:
            self._bytes -= len(answer.body)

    def _put(self, job_id: str, answer: Answer) -> None:
        self.forget(job_id)
        self._answers[job_id] = answer
        self._bytes += len(answer.body)
        while self._answers and (len(self._answers) > self.max_entries or self._bytes > self.max_bytes):
            _, dropped = self._answers.popitem(last=False)
            self._bytes -= len(dropped.body)


async def send_answer(send: Any, code: int, headers: RawHeaders, body: bytes) -> None:
    """Send one answer of :meth:`PollAnswers.answer`. Its headers are already a copy of the kept
    ones: a middleware around ours may add to the message's list in place (Starlette's
    ``MutableHeaders`` does)."""
    await send({"type": "http.response.start", "status": code, "headers": headers})
    await send({"type": "http.response.body", "body": body})
