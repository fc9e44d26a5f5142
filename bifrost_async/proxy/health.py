"""The proxy's ``/healthz`` and ``/readyz`` report: the upstream, the job store and the queue.

A store is probed through its ordinary API, with no plugin hook to add: a ``get`` of a
well-formed id that is never issued costs one lookup, answers ``None`` when the store works and
raises :class:`~bifrost_async.core.store.StoreUnavailable` (or times out) when it does not, which is
exactly when every submit would get 503.
"""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING, Any

import structlog

from bifrost_async import __version__
from bifrost_async.core.store import JobStore, StoreError

if TYPE_CHECKING:
    from bifrost_async.builtin.upstream import Upstream
    from bifrost_async.http.middleware import AsyncJobsMiddleware

log = structlog.get_logger(__name__)

#: Seconds the store probe waits: a load balancer's health check must not hang on a dead store.
STORE_PROBE_TIMEOUT = 2.0
#: A UUID v4 in the shape of job ids that :func:`~bifrost_async.core.jobs.new_job_id` never returns
#: in practice (its 122 random bits are all zero), so the probe reads nothing real.
PROBE_JOB_ID = "00000000-0000-4000-8000-000000000000"


async def probe_store(store: JobStore | None) -> dict[str, Any]:
    """``{"ok": True}`` when ``store`` answers a lookup within :data:`STORE_PROBE_TIMEOUT`, else
    ``{"ok": False, "error": "..."}`` saying why (never the store's URL or credentials)."""
    if store is None:
        return {"ok": False, "error": "the job store is not started"}
    try:
        async with asyncio.timeout(STORE_PROBE_TIMEOUT):
            await store.get(PROBE_JOB_ID)
    except TimeoutError:
        return {"ok": False, "error": f"the job store did not answer within {STORE_PROBE_TIMEOUT:g} s"}
    except StoreError as exc:
        log.warning("health.store_unavailable", exc_type=type(exc).__name__)
        return {"ok": False, "error": "the job store is unavailable"}
    return {"ok": True}


async def health_report(
    upstream: Upstream, jobs: AsyncJobsMiddleware | None, started_at: float
) -> dict[str, Any]:
    """The health body: ``status`` (``ok``/``degraded``), ``down`` (the parts that are not ok:
    ``upstream``, ``store``, and ``jobs`` while draining for shutdown), each part's probe, and the
    job queue. Both probes run at once."""
    upstream_probe, store_probe = await asyncio.gather(
        upstream.probe(), probe_store(jobs.store if jobs is not None else None)
    )
    parts: dict[str, dict[str, Any]] = {
        "upstream": {"url": str(upstream.base_url.with_user(None)), **upstream_probe},
        "store": {"name": jobs.config.store if jobs is not None else None, **store_probe},
    }
    down = [name for name, part in parts.items() if not part["ok"]]
    runner = jobs.runner if jobs is not None else None
    if runner is not None and not runner.accepting:
        down.append("jobs")  # draining for shutdown: every submit gets 503 from now on
    body: dict[str, Any] = {
        "status": "degraded" if down else "ok",
        "version": __version__,
        "uptime_s": round(time.time() - started_at, 1),
        "down": down,
        **parts,
    }
    if runner is not None:
        body["jobs"] = {"accepting": runner.accepting, "queued": runner.queued, "running": runner.running}
    return body
