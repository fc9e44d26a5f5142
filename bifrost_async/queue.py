"""Public module for plugin authors: what a work-queue plugin needs, from one module.

A queue plugin registers factories with the ``register_queues`` hook; each builds a
:class:`WorkQueue` from a :class:`QueueContext`. A distributed queue also carries the request
(a :class:`CapturedRequest`) to the instance that runs it, sealing its headers with the
operator's :class:`Keyring`, and ends a job it gives up on with :func:`finish_job`. The code lives
in :mod:`bifrost_async.core`; this module re-exports it so plugins import nothing else.
"""

from bifrost_async.core.capture import CapturedRequest as CapturedRequest
from bifrost_async.core.capture import Headers as Headers
from bifrost_async.core.finish import finish_job as finish_job
from bifrost_async.core.outcome import failure as failure
from bifrost_async.core.outcome import worker_lost_outcome as worker_lost_outcome
from bifrost_async.core.queue import QueueContext as QueueContext
from bifrost_async.core.queue import QueueFactory as QueueFactory
from bifrost_async.core.queue import QueueOptions as QueueOptions
from bifrost_async.core.queue import QueueRefused as QueueRefused
from bifrost_async.core.queue import RegisterQueue as RegisterQueue
from bifrost_async.core.queue import Slot as Slot
from bifrost_async.core.queue import WorkItem as WorkItem
from bifrost_async.core.queue import WorkQueue as WorkQueue
from bifrost_async.core.sealing import ENV_VAR as ENCRYPTION_KEY_ENV
from bifrost_async.core.sealing import Keyring as Keyring
from bifrost_async.core.sealing import SealError as SealError
from bifrost_async.core.sealing import generate_key as generate_key

__all__ = [
    "ENCRYPTION_KEY_ENV",
    "CapturedRequest",
    "Headers",
    "Keyring",
    "QueueContext",
    "QueueFactory",
    "QueueOptions",
    "QueueRefused",
    "RegisterQueue",
    "SealError",
    "Slot",
    "WorkItem",
    "WorkQueue",
    "failure",
    "finish_job",
    "generate_key",
    "worker_lost_outcome",
]
