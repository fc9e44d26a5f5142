"""The request that travels with a job: what the replay needs, in Redis, for any instance.

Written once at submit, by the instance that accepted the job, read by the instance that runs it
(which rebuilds a local spool), deleted when the job ends. Two keys per job:

- ``{prefix}req:{id}:body``: a list of pieces of at most ``PIECE_BYTES`` (256 KiB), each its own
  ``RPUSH`` and read back with its own ``LINDEX``, so a 25 MB upload never holds Redis for the
  time of one huge command: other clients' commands run between the pieces.
- ``{prefix}req:{id}:head``: method, path, query, the size, the connection's scheme/server/client
  (for in-process replay), and the **whole header list sealed** (AES-256-GCM,
  :class:`bifrost_async.queue.Keyring`, the job id as authenticated context): no header, so no
  credential, is in Redis in clear, and a head cannot be swapped onto another job. Written after
  the body: a head present means the body is whole.

Both expire (``ttl``) in case the job's end never deletes them (an instance that died with it).
This is part of the Redis queue plugin rather than a hook of its own: the request's life (written
with the stream entry, read on delivery, deleted with the ack) is the queue's, and one Redis
serves both. A shared-directory or object-store variant would implement these three methods.
"""

from __future__ import annotations

import base64
import json
import tempfile
from collections.abc import Awaitable, Callable
from typing import IO, Any

import redis.asyncio as aioredis
from bifrost_async.queue import CapturedRequest, Headers, Keyring
from redis.asyncio.client import Pipeline

#: Bytes per piece of a stored body: one command each, so Redis serves others in between.
PIECE_BYTES = 256 * 1024
#: The submitting scope's connection details kept for the asgi provider's replay (JSON values).
_CARRIED = ("http_version", "scheme", "server", "client", "root_path")


#: Adds commands to a pipeline (``await then(pipe)``).
Then = Callable[[Pipeline], Awaitable[object]]


class RequestLost(Exception):
    """The stored request is gone (expired, deleted) or cannot be opened with the keyring."""


def carried_scope(scope: dict[str, Any]) -> dict[str, Any]:
    """The submitting scope's connection details a replay keeps, as JSON values."""
    return {k: scope[k] for k in _CARRIED if _jsonable(scope.get(k))}


def rebuilt_scope(stored: dict[str, Any]) -> dict[str, Any]:
    """:func:`carried_scope` read back (``server`` and ``client`` are tuples in ASGI)."""
    scope = dict(stored)
    for name in ("server", "client"):
        if isinstance(scope.get(name), list):
            scope[name] = tuple(scope[name])
    return scope


def sealed_head(job_id: str, request: CapturedRequest, keyring: Keyring) -> dict[str, Any]:
    """The stored head of ``request``: everything but the body, its header list sealed."""
    headers = json.dumps([[k.decode("latin-1"), v.decode("latin-1")] for k, v in request.headers])
    sealed = keyring.seal(headers.encode("latin-1"), context=job_id.encode())
    return {
        "method": request.method,
        "path": request.path,
        "query": request.query_string.decode("latin-1"),
        "size": request.body_size,
        "peer": request.peer,
        "scope": carried_scope(request.scope),
        "headers": base64.b64encode(sealed).decode(),
    }


def opened_headers(job_id: str, head: dict[str, Any], keyring: Keyring) -> Headers:
    """The header list :func:`sealed_head` sealed; :class:`RequestLost` if it does not open."""
    try:
        opened = keyring.open(base64.b64decode(head["headers"]), context=job_id.encode())
    except Exception as exc:  # SealError, or a mangled value: never echo it
        raise RequestLost(f"the job's headers cannot be opened ({type(exc).__name__})") from None
    return [(k.encode("latin-1"), v.encode("latin-1")) for k, v in json.loads(opened)]


def rebuilt_request(head: dict[str, Any], headers: Headers, body: IO[bytes]) -> CapturedRequest:
    """The request a stored head, its opened headers and a local ``body`` make."""
    return CapturedRequest(
        method=head["method"],
        path=head["path"],
        query_string=head["query"].encode("latin-1"),
        headers=headers,
        body=body,
        body_size=head["size"],
        scope=rebuilt_scope(head["scope"]),
        peer=head["peer"],
    )


class RedisRequests:
    """Store, load and drop the replay of a job's request in Redis."""

    #: The queue's ack script deletes the keys in the same step as the entry.
    in_redis = True

    def __init__(self, redis: aioredis.Redis, *, prefix: str, keyring: Keyring, ttl: int) -> None:
        self.redis = redis
        self.prefix = prefix
        self.keyring = keyring
        #: Seconds the keys live if nobody deletes them.
        self.ttl = ttl

    def head_key(self, job_id: str) -> str:
        return f"{self.prefix}req:{job_id}:head"

    def body_key(self, job_id: str) -> str:
        return f"{self.prefix}req:{job_id}:body"

    async def save(self, job_id: str, request: CapturedRequest, *, then: Then | None = None) -> None:
        """Write the body in pieces, then the head with its headers sealed; ``then`` adds
        commands (the queue's publish) to the last round trip. A body of one piece costs one
        round trip in all (job ids are fresh: nothing to clear first)."""
        body_key = self.body_key(job_id)
        request.rewind()
        piece = request.body.read(PIECE_BYTES)
        while piece:
            following = request.body.read(PIECE_BYTES)
            if not following:
                break  # the last piece goes with the head
            await self.redis.rpush(body_key, piece)
            piece = following
        head = sealed_head(job_id, request, self.keyring)
        async with self.redis.pipeline(transaction=False) as pipe:
            if piece:
                pipe.rpush(body_key, piece)
                pipe.expire(body_key, self.ttl)
            pipe.set(self.head_key(job_id), json.dumps(head), ex=self.ttl)
            if then is not None:
                await then(pipe)
            await pipe.execute()

    async def load(self, job_id: str, *, memory_bytes: int, spool_dir: str | None) -> CapturedRequest:
        """Rebuild the request with a local spool; :class:`RequestLost` if it cannot be."""
        body_key = self.body_key(job_id)
        async with self.redis.pipeline(transaction=False) as pipe:  # one round trip for one piece
            pipe.get(self.head_key(job_id))
            pipe.llen(body_key)
            pipe.lindex(body_key, 0)
            raw, pieces, first = await pipe.execute()
        if raw is None:
            raise RequestLost("the job's request is no longer stored")
        head = json.loads(raw)
        headers = opened_headers(job_id, head, self.keyring)
        spool: IO[bytes] = tempfile.SpooledTemporaryFile(  # noqa: SIM115 - owned by the request
            max_size=memory_bytes, dir=spool_dir, prefix="bifrost-async-"
        )
        try:
            if first is not None:
                spool.write(first)
            for index in range(1, int(pieces)):
                piece: Any = await self.redis.lindex(body_key, index)
                if piece is None:
                    raise RequestLost("the job's request body is no longer stored")
                spool.write(piece)
            if spool.tell() != head["size"]:
                raise RequestLost("the job's request body is incomplete")
        except BaseException:
            spool.close()
            raise
        spool.seek(0)
        return rebuilt_request(head, headers, spool)

    async def drop(self, job_id: str) -> None:
        """Delete the stored request (the job ended, or was withdrawn). ``UNLINK``: Redis frees a
        large body in the background instead of blocking every client while it does."""
        await self.redis.unlink(self.head_key(job_id), self.body_key(job_id))


def _jsonable(value: object) -> bool:
    return isinstance(value, str | int | float | list | tuple) and value is not None
