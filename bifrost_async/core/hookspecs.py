"""The hooks a bifrost-async plugin may implement.

A plugin is any module or object with functions decorated by :data:`bifrost_async.hookimpl`,
registered through the ``bifrost_async`` entry-point group (a distribution named
``bifrost-async-<name>``) or passed as ``AsyncJobsMiddleware(app, plugins=[...])``.

Hooks are synchronous and cheap. I/O belongs in the async methods of the store and provider
objects that the registration hooks hand over.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import pluggy

from bifrost_async.core.jobs import Job
from bifrost_async.core.provider import ProviderFactory
from bifrost_async.core.queue import RegisterQueue
from bifrost_async.core.store import RegisterStore

PROJECT = "bifrost_async"

hookspec = pluggy.HookspecMarker(PROJECT)
#: Decorate a plugin's hook functions with this.
hookimpl = pluggy.HookimplMarker(PROJECT)


@hookspec
def register_stores(register: RegisterStore) -> None:
    """Register job stores by name.

    Called once when a middleware builds its plugin registries. Call ``register(name, factory)``
    for each store; ``factory(context: StoreContext)`` returns an object that satisfies
    :class:`bifrost_async.core.store.JobStore`. Configuration chooses a store by ``name``
    (``store="memory"``). Two plugins registering the same name is an error naming both.

    Pass ``shared=True`` (``register(name, factory, shared=True)``) when every process pointed at
    the same place (file, server) sees the same jobs, bounds and wake-ups; only such a store may
    run under ``serve --workers N`` with N above 1. The factory is called once while the
    middleware is built, to check options (see :func:`bifrost_async.core.store.parse_store_options`),
    so it must not do I/O: connect in ``start()``.
    """


@hookspec
def register_queues(register: RegisterQueue) -> None:
    """Register work queues (between accepting a job and running it) by name.

    Called once when a middleware builds its plugin registries. Call ``register(name, factory)``
    for each queue; ``factory(context: QueueContext)`` returns an object that satisfies
    :class:`bifrost_async.core.queue.WorkQueue`. Configuration chooses one by ``name``
    (``queue="local"``, the built-in in-process queue, is the default). Pass ``shared=True`` for a
    queue every instance on the same store takes work from; any queue other than ``local`` needs
    a store registered ``shared=True``. The factory is called once while the middleware is built
    (``context.store`` is ``None``; raise ``ValueError`` with a one-line message for a bad option
    or a missing encryption key), so it must not do I/O: connect in ``start()``. Two plugins
    registering the same name is an error naming both.
    """


@hookspec
def register_providers(register: Callable[[str, ProviderFactory], None]) -> None:
    """Register providers (where jobs run) by name.

    Called once when a middleware builds its plugin registries. Call ``register(name, factory)``;
    ``factory(context: ProviderContext)`` returns a :class:`bifrost_async.core.provider.Provider`.
    Configuration chooses one by name (``provider="asgi"``). Duplicate names are an error.
    """


@hookspec(firstresult=True)
def job_owner(headers: list[tuple[bytes, bytes]], scope: dict[str, Any], secret: str | None) -> str | None:
    """Decide who owns a job: on submit, the owner stored with it; on poll, who asks.

    Called on every submit and every poll with the request's ASGI ``headers`` and ``scope``, and
    the configured ``owner_secret``. Return a stable string that identifies the owner without
    revealing a credential (a digest), ``""`` for a public job that anyone may poll, or ``None``
    to let the next implementation decide. The first non-``None`` answer wins; the built-in one
    (``trylast``) digests ``x-bf-vk``, ``Authorization``, ``x-api-key`` or ``x-goog-api-key``.
    A poll succeeds only if it yields the same string as the submit.
    """


@hookspec
def job_submitted(job: Job) -> None:
    """Observe a job that was just accepted (status ``pending``), after it was stored.

    Called once per job, in the request's task. Must not block or raise; exceptions are logged
    and ignored. ``job`` must not be modified.
    """


@hookspec
def job_started(job: Job) -> None:
    """Observe a job that a worker has just started (status ``processing``).

    Called once per run, in the worker's task, after the status was stored. Must not block or
    raise; exceptions are logged and ignored. ``job`` must not be modified.
    """


@hookspec
def job_finished(job: Job) -> None:
    """Observe a job that reached ``completed`` or ``failed``, after the outcome was stored.

    Called once per job that this process finished (including jobs failed at shutdown or as
    orphans), with ``status_code``, ``completed_at`` and ``expires_at`` set. Must not block or
    raise; exceptions are logged and ignored. ``job`` must not be modified.
    """


@hookspec
def pre_accept(
    headers: list[tuple[bytes, bytes]], scope: dict[str, Any], request_type: str, config: Any
) -> None:
    """Refuse a submit before anything of it is read, spooled or stored.

    Called first thing on every submit (``/v1/async/*``, ``Prefer: respond-async`` and
    header-driven submits alike), before the body is read, with the request's ASGI ``headers``
    and ``scope``, the route's ``request_type`` and the middleware's
    :class:`~bifrost_async.service.config.AsyncJobsConfig`. Raise
    :class:`bifrost_async.core.errors.AsyncJobError` to refuse the submit with that status and message
    in the contract's error shape; return ``None`` to let it go on. Every implementation is
    called (the first to raise wins). The built-in one checks the operator's accepted keys
    (``config.api_keys``). Must be cheap: it runs on the request's task.
    """


@hookspec
def validate_submit(headers: list[tuple[bytes, bytes]], request_type: str) -> dict[str, str] | None:
    """Accept or refuse a submit, and attach metadata to the job it creates.

    Called on every submit after the body was validated (size, JSON or multipart, streaming,
    ``model``, file) and before a queue slot is taken or the job is stored, with the request's
    ASGI ``headers`` and the route's ``request_type``. Raise
    :class:`bifrost_async.core.errors.AsyncJobError` to refuse the submit with that status and message
    (no job is created). Return ``None``, or a small ``dict[str, str]`` that is merged into
    ``job.metadata`` and stored with the job, so observers can read it when the job ends (e.g.
    ``{"webhook": "billing"}``). Metadata must never hold a credential or any part of the request
    body; prefix keys with the plugin's name to avoid clashes (a later plugin's key wins).
    """


@hookspec
def async_jobs_startup(middleware: Any) -> Awaitable[None] | None:
    """Start a plugin's own resources (sessions, background tasks) with the middleware.

    Called once per :class:`~bifrost_async.AsyncJobsMiddleware` instance, after its store,
    provider and worker pool have started, inside the server's event loop. ``middleware`` is that
    instance (read ``middleware.config``, ``middleware.runner``, ``middleware.routes``; do not
    replace them). Return ``None`` or an awaitable, which the middleware awaits; an exception
    fails the server's startup.
    """


@hookspec
def async_jobs_shutdown(middleware: Any) -> Awaitable[None] | None:
    """Stop a plugin's own resources.

    Called once per started middleware during shutdown, after the worker pool has drained (every
    ``job_finished`` of this process has fired) and before the provider and the store close.
    ``middleware`` is the instance being stopped. Return ``None`` or an awaitable, which the
    middleware awaits (e.g. to flush pending deliveries within a bound); exceptions are logged
    and ignored, so one plugin cannot stop the others from closing.
    """
