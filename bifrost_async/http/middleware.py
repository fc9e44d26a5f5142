"""``AsyncJobsMiddleware``: Bifrost's ``/v1/async`` job API on any ASGI app."""

from __future__ import annotations

import asyncio
from typing import Any

import pluggy
import structlog

from bifrost_async.core.capture import ClientDisconnected
from bifrost_async.core.errors import AsyncJobError, error_body
from bifrost_async.core.hooks import (
    PluginError,
    call_lifecycle,
    make_plugin_manager,
    notify,
    provider_registry,
    queue_registry,
    store_registry,
)
from bifrost_async.core.jobs import Job
from bifrost_async.core.logfields import exception_fields
from bifrost_async.core.provider import Provider, ProviderContext
from bifrost_async.core.queue import QueueContext
from bifrost_async.core.reachability import StoreReachability
from bifrost_async.core.runner import JobRunner, default_worker_name
from bifrost_async.core.store import JobStore, StoreContext, StoreHost
from bifrost_async.http.endpoints import JobEndpoints
from bifrost_async.http.header_async import HeaderAsync
from bifrost_async.http.respond import send_json
from bifrost_async.http.router import Router
from bifrost_async.service.config import AsyncJobsConfig, OptionError
from bifrost_async.service.jobs_service import JobService

log = structlog.get_logger(__name__)

ASGIApp = Any


class AsyncJobsMiddleware:
    """Wrap an ASGI app with the async job routes.

    ``POST {prefix}/<type path>`` captures the request and answers 202 with a job;
    ``GET {prefix}/<type path>/{id}`` polls it. Every other request goes to ``app`` untouched.
    Jobs are replayed into ``app`` itself by the default ``asgi`` provider.

    Options are the fields of :class:`~bifrost_async.service.config.AsyncJobsConfig`, as keywords or as
    ``config=``. ``plugins`` registers extra plugin objects on this instance's own plugin manager;
    ``plugin_manager`` replaces that manager entirely. Works as
    ``app.add_middleware(AsyncJobsMiddleware, **options)`` in Starlette and FastAPI.
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        config: AsyncJobsConfig | None = None,
        plugins: tuple[Any, ...] | list[Any] = (),
        plugin_manager: pluggy.PluginManager | None = None,
        **options: Any,
    ) -> None:
        if config is not None and options:
            raise TypeError("pass either config= or keyword options, not both")
        self.app = app
        self.config = config or AsyncJobsConfig.from_options(**options)
        self.pm = plugin_manager or make_plugin_manager(plugins)
        self.routes = self.config.routes()
        self.header_async = HeaderAsync(self.routes, self.config.header_async_routes)
        #: One router and one endpoints object for every request; the endpoints get the
        #: service when it starts.
        self.router = Router(self.routes, self.header_async, self.pm)
        self.endpoints = JobEndpoints(self.routes, self.header_async, self.pm, self.config)
        try:
            stores = store_registry(self.pm)
            self._store_factory = stores.get(self.config.store)
            self._store_shared = stores.is_shared(self.config.store)
        except PluginError as exc:
            raise OptionError("store", str(exc)) from None
        try:
            self._queue_factory = queue_registry(self.pm).get(self.config.queue)
        except PluginError as exc:
            raise OptionError("queue", str(exc)) from None
        if self.config.queue != "local" and not self._store_shared:
            raise OptionError(
                "queue",
                f"queue {self.config.queue!r} needs a shared store (e.g. store 'redis'); "
                f"store {self.config.store!r} is not shared",
            )
        try:
            self._provider_factory = provider_registry(self.pm).get(self.config.provider)
        except PluginError as exc:
            raise OptionError("provider", str(exc)) from None
        self._check_factories()
        self.store: JobStore | None = None
        self.provider: Provider | None = None
        self.runner: JobRunner | None = None
        self.service: JobService | None = None
        self._start_lock = asyncio.Lock()
        self._stopped = False

    def _check_factories(self) -> None:
        """Build the store and the provider once and drop them, so that their options are checked
        now, before a server starts, rather than at the first lifespan or request. Factories only
        parse options and build objects (a store connects in ``start()``), so this costs nothing."""
        cfg = self.config
        try:
            self._store_factory(
                StoreContext(clock=cfg.clock, max_jobs=cfg.max_jobs, options=cfg.store_options)
            )
        except (ValueError, TypeError) as exc:
            raise OptionError("store_options", f"store {cfg.store!r}: {exc}") from None
        try:
            self._provider_factory(ProviderContext(app=self.app, options=cfg.provider_options))
        except (ValueError, TypeError) as exc:
            raise OptionError("provider_options", f"provider {cfg.provider!r}: {exc}") from None
        try:
            self._queue_factory(QueueContext(config=cfg, store=None, worker_name=default_worker_name()))
        except (ValueError, TypeError) as exc:
            raise OptionError("queue", f"queue {cfg.queue!r}: {exc}") from None

    def _queue_finished(self, job: Job) -> None:
        """A job the queue itself ended (its attempts spent): log it and tell the observers."""
        log.warning("job.attempts_spent", job_id=job.id, worker=job.worker, status=job.status.value)
        notify(self.pm, "job_finished", job=job)

    # -- lifecycle -----------------------------------------------------------------------------

    async def startup(self) -> None:
        """Start the store, the provider and the worker pool (once; later calls do nothing)."""
        async with self._start_lock:
            if self.service is not None:
                return
            cfg = self.config
            store = self._store_factory(
                StoreContext(
                    clock=cfg.clock,
                    max_jobs=cfg.max_jobs,
                    options=cfg.store_options,
                    max_owner_jobs=cfg.owner_job_share(),
                )
            )
            provider = self._provider_factory(ProviderContext(app=self.app, options=cfg.provider_options))
            await store.start()
            try:
                await provider.start()
            except BaseException:
                await store.close()
                raise
            worker_name = cfg.worker_name or default_worker_name()
            reachability = StoreReachability(cfg.clock, cfg.lease_seconds)
            queue = self._queue_factory(
                QueueContext(
                    config=cfg,
                    store=store,
                    worker_name=worker_name,
                    finished=self._queue_finished,
                    reachability=reachability,
                )
            )
            if queue is None:
                raise RuntimeError(f"queue {cfg.queue!r}: its factory built no queue for a started store")
            runner = JobRunner(
                store=store,
                provider=provider,
                pm=self.pm,
                config=cfg,
                worker_name=worker_name,
                queue=queue,
                reachability=reachability,
            )
            try:
                await runner.start()
            except BaseException:
                await provider.close()
                await store.close()
                raise
            self.store, self.provider, self.runner = store, provider, runner
            self.service = JobService(config=cfg, pm=self.pm, store=store, runner=runner)
            self.endpoints.bind(self.service)
            attach = getattr(store, "attach", None)
            if callable(attach):  # a store that sweeps its own orphans (StoreHost)
                attach(
                    StoreHost(
                        holds=runner.owns,
                        fail_orphan=self.service.fail_orphan,
                        reachability=runner.reachability,
                    )
                )
            await call_lifecycle(self.pm, "async_jobs_startup", isolate=False, middleware=self)
            if self._store_shared and not cfg.owner_secret:
                # Unkeyed owner digests in a store others can read let them test guessed
                # credentials offline; warned, not refused, so a first try still works.
                log.warning(
                    "async_jobs.owner_secret_missing",
                    store=cfg.store,
                    risk="owner digests in a shared store are unkeyed SHA-256; its readers can test "
                    "guessed credentials",
                    fix="set owner_secret (BIFROST_ASYNC_OWNER_SECRET), the same on every process",
                )
            log.info(
                "async_jobs.started",
                store=cfg.store,
                queue=cfg.queue,
                provider=cfg.provider,
                concurrency=cfg.concurrency,
                worker=runner.worker_name,
            )

    async def drain(self) -> None:
        """Stop taking jobs; give queued and running jobs ``shutdown_grace`` to end, then fail
        the rest. The wrapped app is still up while this runs."""
        if self.runner is not None and self.runner.accepting:
            await self.runner.stop()

    async def shutdown(self) -> None:
        """:meth:`drain`, then close the provider and the store."""
        await self.drain()
        if self._stopped or self.service is None:
            return
        self._stopped = True
        assert self.provider is not None and self.store is not None
        await call_lifecycle(self.pm, "async_jobs_shutdown", isolate=True, middleware=self)
        try:
            await self.provider.close()
        finally:
            await self.store.close()
        log.info("async_jobs.stopped")

    async def _lifespan(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        """Run our start/stop inside the server's lifespan and pass it on to the app; if the app
        does not speak lifespan, answer the server ourselves."""
        seen_startup = False
        failed: list[str] = []
        unwinding = False  # our startup failed after the app started: it gets a shutdown of its own

        async def app_receive() -> dict[str, Any]:
            nonlocal seen_startup
            if unwinding:
                # The server sends no shutdown after a failed startup, so the app would never
                # close what its startup opened (the proxy's aiohttp session): ask it ourselves.
                return {"type": "lifespan.shutdown"}
            message: dict[str, Any] = await receive()
            if message["type"] == "lifespan.startup":
                seen_startup = True
                try:
                    await self.startup()
                except Exception as exc:
                    log.error("async_jobs.startup_failed", **exception_fields(exc))
                    failed.append(f"bifrost-async failed to start: {type(exc).__name__}: {exc}")
            elif message["type"] == "lifespan.shutdown":
                await self.drain()
            return message

        async def app_send(message: dict[str, Any]) -> None:
            nonlocal unwinding
            if message["type"] == "lifespan.startup.complete" and failed:
                unwinding = True
                return
            if unwinding and message["type"] == "lifespan.shutdown.complete":
                message = {"type": "lifespan.startup.failed", "message": failed[0]}
            elif message["type"] == "lifespan.shutdown.complete":
                await self.shutdown()
            await send(message)

        try:
            await self.app(scope, app_receive, app_send)
        except BaseException:
            if seen_startup:
                raise
            log.info("async_jobs.app_without_lifespan")
        else:
            if seen_startup:
                return
        await self._own_lifespan(receive, send)

    async def _own_lifespan(self, receive: Any, send: Any) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                try:
                    await self.startup()
                except Exception as exc:
                    await send({"type": "lifespan.startup.failed", "message": str(exc)})
                    return
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await self.shutdown()
                await send({"type": "lifespan.shutdown.complete"})
                return

    # -- requests ------------------------------------------------------------------------------

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(scope, receive, send)
            return
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = scope["path"]
        root = scope.get("root_path", "")
        if root and path.startswith(root):
            path = path[len(root) :]
        match = self.router.match(path, scope)
        if match is None:
            await self.app(scope, receive, send)
            return
        started = False

        async def tracked_send(message: dict[str, Any]) -> None:
            nonlocal started
            started = True
            await send(message)

        try:
            self._check_header_size(scope)
            if match.needs_service and self.service is None:
                await self.startup()  # a server that runs no lifespan: start at the first request
            await match.handler(self.endpoints, match, scope, receive, tracked_send)
        except ClientDisconnected:
            log.info("job.client_disconnected")
        except AsyncJobError as exc:
            if not started:
                await send_json(tracked_send, exc.status_code, exc.body(), exc.headers)
        except Exception as exc:
            log.error("async_jobs.internal_error", path=path, **exception_fields(exc))
            if not started:
                body = error_body(500, "internal error in the async job service", type="server_error")
                await send_json(tracked_send, 500, body)

    def _check_header_size(self, scope: dict[str, Any]) -> None:
        """431 for oversized headers, on every request the middleware answers itself."""
        header_bytes = sum(len(name) + len(value) for name, value in scope["headers"])
        if header_bytes > self.config.max_header_bytes:
            raise AsyncJobError(
                431,
                f"request headers exceed the limit of {self.config.max_header_bytes} bytes",
                code="headers_too_large",
            )
