"""Requests in a shared directory (``request_dir``): for a volume every instance mounts.

The same life as :class:`~bifrost_async_redis.requests.RedisRequests` (written at submit, read
by the instance that runs the job, deleted when it ends), for deployments whose uploads are too
large to keep in Redis memory. Two files per job: ``<id>.body`` (the body as it came) and
``<id>.head`` (the head as in Redis, the header list sealed with the operator's keys), each
written to a temporary name and renamed, the head last, so a head present means a whole body.
The running instance reads the body file directly (no copy). Files whose job never ended (an
instance died and the job was then lost for good) are not swept: clean the directory of files
older than your longest ``max_ttl`` now and then.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
from pathlib import Path
from typing import IO

from bifrost_async.queue import CapturedRequest, Keyring

from .requests import RequestLost, opened_headers, rebuilt_request, sealed_head


class DirectoryRequests:
    """Store, load and drop the replay of a job's request in a shared directory."""

    #: Whether the queue's ack script deletes the stored request (Redis keys): not here.
    in_redis = False

    def __init__(self, directory: str, *, keyring: Keyring, prefix: str) -> None:
        self.directory = Path(directory)
        self.keyring = keyring
        self.prefix = prefix

    def head_key(self, job_id: str) -> str:
        """The Redis key the ack script unlinks: none exists here, so it does nothing."""
        return f"{self.prefix}req:{job_id}:head"

    def body_key(self, job_id: str) -> str:
        return f"{self.prefix}req:{job_id}:body"

    def _path(self, job_id: str, suffix: str) -> Path:
        return self.directory / f"{job_id}.{suffix}"

    async def save(self, job_id: str, request: CapturedRequest) -> None:
        """Copy the body (in a thread), then write the head with its headers sealed."""
        head = sealed_head(job_id, request, self.keyring)

        def write() -> None:
            request.rewind()
            temporary = self._path(job_id, "body.tmp")
            with temporary.open("wb") as out:
                shutil.copyfileobj(request.body, out, 1024 * 1024)
            os.replace(temporary, self._path(job_id, "body"))
            temporary = self._path(job_id, "head.tmp")
            temporary.write_text(json.dumps(head))
            os.replace(temporary, self._path(job_id, "head"))

        try:
            await asyncio.to_thread(write)
        except OSError as exc:
            raise RequestLost(f"cannot write the request to the request directory ({exc.strerror})") from None

    async def load(self, job_id: str, *, memory_bytes: int, spool_dir: str | None) -> CapturedRequest:
        """The request, its body read straight from the shared file; :class:`RequestLost` if
        it is gone or cannot be opened with the keyring."""
        try:
            head = json.loads(self._path(job_id, "head").read_text())
            body: IO[bytes] = self._path(job_id, "body").open("rb")
        except (OSError, ValueError):
            raise RequestLost("the job's request is no longer in the request directory") from None
        try:
            headers = opened_headers(job_id, head, self.keyring)
            if os.fstat(body.fileno()).st_size != head.get("size"):
                raise RequestLost("the job's request body is incomplete")
        except BaseException:
            body.close()
            raise
        return rebuilt_request(head, headers, body)

    async def drop(self, job_id: str) -> None:
        """Delete the job's files (an open reader keeps reading: POSIX unlink semantics)."""
        for suffix in ("head", "body"):
            self._path(job_id, suffix).unlink(missing_ok=True)
