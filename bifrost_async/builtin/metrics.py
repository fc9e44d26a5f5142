"""Prometheus metrics for the job API, as a plugin on the observer hooks.

``metrics = MetricsPlugin()`` is registered like any plugin
(``AsyncJobsMiddleware(app, plugins=[metrics])``) and serves the text exposition itself: either
wrap the whole stack with ``metrics.wrap(...)``, which answers ``GET /metrics`` and passes every
other request (and the lifespan) on, or mount ``metrics.asgi_app`` in your own router.

Several uvicorn workers: prometheus-client's multiprocess mode. Set ``PROMETHEUS_MULTIPROC_DIR``
to an empty directory before the workers start (it is read when prometheus-client is imported);
each worker then writes its samples there and a scrape of any worker reports the sum over all of
them. The queue-depth and running gauges are per-worker values summed over live workers
(``livesum``); a worker removes its own gauge files at shutdown, but one that is killed leaves
its last values behind until the directory is cleared (as on every deploy). Without the
variable, everything is in-process and per instance (own ``CollectorRegistry``).
"""

from __future__ import annotations

import os
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.multiprocess import MultiProcessCollector, mark_process_dead

from bifrost_async.builtin.webhooks.delivery import DeliveryReport
from bifrost_async.core.hookspecs import hookimpl
from bifrost_async.core.jobs import Job

#: Seconds, from a fast embedding to a long transcription.
DURATION_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800)
ASGIApp = Any


def multiprocess_dir() -> str | None:
    """The multiprocess directory when prometheus-client runs in multiprocess mode."""
    return os.environ.get("PROMETHEUS_MULTIPROC_DIR") or None


class MetricsPlugin:
    """Counts and times jobs; exposes queue depth, running jobs and webhook deliveries.

    Metrics (prefix ``bifrost_async_``): ``jobs_submitted_total{request_type}``,
    ``jobs_finished_total{request_type,status}``, ``job_duration_seconds{request_type}`` (start to
    end), ``job_queue_wait_seconds{request_type}`` (submit to start), ``queue_depth``,
    ``jobs_running``, ``webhook_deliveries_total{webhook,event,outcome}`` (pass
    :meth:`record_webhook` as the webhook plugin's ``on_delivery``). ``path`` is where
    :meth:`wrap` answers.
    """

    def __init__(self, *, path: str = "/metrics", registry: CollectorRegistry | None = None) -> None:
        self.path = path
        self.registry = registry or CollectorRegistry()
        self._runner: Any = None
        reg = self.registry
        self.submitted = Counter(
            "bifrost_async_jobs_submitted", "Jobs accepted.", ["request_type"], registry=reg
        )
        self.finished = Counter(
            "bifrost_async_jobs_finished", "Jobs ended, by outcome.", ["request_type", "status"], registry=reg
        )
        self.duration = Histogram(
            "bifrost_async_job_duration_seconds",
            "Time from a job's start to its end.",
            ["request_type"],
            buckets=DURATION_BUCKETS,
            registry=reg,
        )
        self.queue_wait = Histogram(
            "bifrost_async_job_queue_wait_seconds",
            "Time from a job's submit to its start.",
            ["request_type"],
            buckets=DURATION_BUCKETS,
            registry=reg,
        )
        self.queue_depth = Gauge(
            "bifrost_async_queue_depth",
            "Jobs waiting for a worker.",
            registry=reg,
            multiprocess_mode="livesum",
        )
        self.running = Gauge(
            "bifrost_async_jobs_running", "Jobs running now.", registry=reg, multiprocess_mode="livesum"
        )
        self.webhooks = Counter(
            "bifrost_async_webhook_deliveries",
            "Webhook events by final outcome (delivered, failed, dropped).",
            ["webhook", "event", "outcome"],
            registry=reg,
        )

    # -- hooks ---------------------------------------------------------------------------------

    @hookimpl
    def async_jobs_startup(self, middleware: Any) -> None:
        self._runner = middleware.runner
        self.refresh()

    @hookimpl
    def async_jobs_shutdown(self, middleware: Any) -> None:
        self.queue_depth.set(0)
        self.running.set(0)
        directory = multiprocess_dir()
        if directory:
            mark_process_dead(os.getpid(), directory)  # type: ignore[no-untyped-call]  # drops this worker's live gauges

    @hookimpl
    def job_submitted(self, job: Job) -> None:
        self.submitted.labels(job.request_type).inc()
        self.refresh()

    @hookimpl
    def job_started(self, job: Job) -> None:
        if job.started_at is not None:
            self.queue_wait.labels(job.request_type).observe(max(0.0, job.started_at - job.created_at))
        self.refresh()

    @hookimpl
    def job_finished(self, job: Job) -> None:
        self.finished.labels(job.request_type, job.status.value).inc()
        if job.started_at is not None and job.completed_at is not None:
            self.duration.labels(job.request_type).observe(max(0.0, job.completed_at - job.started_at))
        self.refresh()

    def record_webhook(self, report: DeliveryReport) -> None:
        """Count one webhook event's outcome (use as ``WebhooksPlugin(on_delivery=...)``)."""
        self.webhooks.labels(report.webhook, report.event, report.outcome).inc()

    # -- exposition ----------------------------------------------------------------------------

    def refresh(self) -> None:
        """Sample the runner's queue and running counts into the gauges. Done at every job event
        and every scrape, because multiprocess gauges cannot be read lazily from another worker."""
        if self._runner is not None:
            self.queue_depth.set(self._runner.queued)
            self.running.set(self._runner.running)

    def render(self) -> bytes:
        """The text exposition: this instance's registry, or every worker's in multiprocess mode."""
        self.refresh()
        directory = multiprocess_dir()
        if directory:
            combined = CollectorRegistry()
            MultiProcessCollector(combined, path=directory)  # type: ignore[no-untyped-call]
            return generate_latest(combined)
        return generate_latest(self.registry)

    async def asgi_app(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        """An ASGI app answering any GET with the exposition (mount it where you like)."""
        if scope["type"] != "http":
            return
        if scope["method"] not in ("GET", "HEAD"):
            status, body, ctype = 405, b"method not allowed\n", "text/plain; charset=utf-8"
        else:
            status, body, ctype = 200, self.render(), CONTENT_TYPE_LATEST
        headers = [(b"content-type", ctype.encode()), (b"content-length", str(len(body)).encode())]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": b"" if scope["method"] == "HEAD" else body})

    def wrap(self, app: ASGIApp) -> ASGIApp:
        """``app`` with :attr:`path` answered by :meth:`asgi_app`; everything else passes through."""

        async def wrapped(scope: dict[str, Any], receive: Any, send: Any) -> None:
            if scope["type"] == "http" and scope["path"] == self.path:
                await self.asgi_app(scope, receive, send)
            else:
                await app(scope, receive, send)

        return wrapped
