"""The built-in ``local`` work queue: a job runs in the process that accepted it.

It is :class:`~bifrost_async.core.queue.LocalQueue` (a bounded in-process ``asyncio.Queue``),
registered through ``register_queues`` like any third-party queue, and the default of the
``queue`` option, so one machine needs nothing else.
"""

from __future__ import annotations

from bifrost_async.core.hookspecs import hookimpl
from bifrost_async.core.queue import LocalQueue, QueueContext, RegisterQueue


def local_queue(context: QueueContext) -> LocalQueue | None:
    """Factory of the ``local`` queue: bounded by ``queue_size`` and ``owner_queue_size``."""
    return LocalQueue(context.config)


@hookimpl
def register_queues(register: RegisterQueue) -> None:
    """Register the in-process queue as ``local``."""
    register("local", local_queue)
