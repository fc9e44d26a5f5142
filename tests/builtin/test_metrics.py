"""Prometheus metrics through a real server: counts after a known sequence of jobs, the queue and
running gauges while a job is held, webhook delivery counts, and multiprocess aggregation."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
from prometheus_client.parser import text_string_to_metric_families

from bifrost_async import AsyncJobsMiddleware
from bifrost_async.builtin.metrics import MetricsPlugin
from bifrost_async.builtin.webhooks.delivery import DeliveryReport
from tests.apps import make_app
from tests.helpers import Recorder, Stack

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def parse(text: str) -> Samples:
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


async def metrics_stack(serve: Any, **options: Any) -> tuple[Stack, MetricsPlugin]:
    app = make_app()
    metrics = MetricsPlugin()
    recorder = Recorder()
    middleware = AsyncJobsMiddleware(app, plugins=[recorder, metrics], **options)
    server = await serve(metrics.wrap(middleware))
    return Stack(server.url, app, middleware, recorder, server), metrics


async def scrape(http: httpx.AsyncClient, url: str) -> Samples:
    response = await http.get(f"{url}/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    return parse(response.text)


async def test_counts_after_a_known_sequence(serve: Any, http: httpx.AsyncClient) -> None:
    stack, metrics = await metrics_stack(serve)
    jobs = []
    for model in ("m", "m", "m", "test/error"):
        jobs.append(await stack.submit(http, "embeddings", json={"model": model, "input": "x"}))
    files = {"file": ("a.wav", b"RIFF" + b"\0" * 64, "audio/wav")}
    jobs.append(await stack.submit(http, "audio/transcriptions", data={"model": "m"}, files=files))
    refused = await stack.submit(http, "embeddings", json={"input": "no model"})
    assert refused.status_code == 400
    for job in jobs:
        await stack.recorder.wait("finished", job.json()["id"])
    metrics.record_webhook(
        DeliveryReport("billing", "async_job.completed", "j", "msg_j", "delivered", 3, 200)
    )

    samples = await scrape(http, stack.url)
    assert value(samples, "bifrost_async_jobs_submitted_total", request_type="embedding") == 4
    assert value(samples, "bifrost_async_jobs_submitted_total", request_type="transcription") == 1
    finished = "bifrost_async_jobs_finished_total"
    assert value(samples, finished, request_type="embedding", status="completed") == 3
    assert value(samples, finished, request_type="embedding", status="failed") == 1
    assert value(samples, finished, request_type="transcription", status="completed") == 1
    assert value(samples, "bifrost_async_job_duration_seconds_count", request_type="embedding") == 4
    assert value(samples, "bifrost_async_job_queue_wait_seconds_count", request_type="transcription") == 1
    assert value(samples, "bifrost_async_queue_depth") == 0
    assert value(samples, "bifrost_async_jobs_running") == 0
    deliveries = "bifrost_async_webhook_deliveries_total"
    assert (
        value(samples, deliveries, webhook="billing", event="async_job.completed", outcome="delivered") == 1
    )
    # everything else still reaches the app; the metrics path is answered before it
    assert (await http.get(f"{stack.url}/plain")).text == "untouched"


async def test_queue_depth_and_running_while_a_job_is_held(serve: Any, http: httpx.AsyncClient) -> None:
    stack, _ = await metrics_stack(serve, concurrency=1)
    held = await stack.submit(http, "embeddings", json={"model": "test/gate", "input": "x"})
    await stack.app.state.gate.arrived.wait()
    waiting = await stack.submit(http, "embeddings", json={"model": "m", "input": "x"})
    samples = await scrape(http, stack.url)
    assert value(samples, "bifrost_async_jobs_running") == 1
    assert value(samples, "bifrost_async_queue_depth") == 1
    stack.app.state.gate.opened.set()
    for job in (held, waiting):
        await stack.recorder.wait("finished", job.json()["id"])
    samples = await scrape(http, stack.url)
    assert value(samples, "bifrost_async_jobs_running") == 0
    assert value(samples, "bifrost_async_queue_depth") == 0


WORKER = """
import sys
from bifrost_async.jobs import Job, JobStatus
from bifrost_async.builtin.metrics import MetricsPlugin
plugin = MetricsPlugin()
for n in range(int(sys.argv[1])):
    job = Job(id=str(n), request_id="r", request_type="embedding", status=JobStatus.COMPLETED,
              created_at=1.0, ttl=5, started_at=1.5, completed_at=2.0)
    plugin.job_submitted(job)
    plugin.job_finished(job)
if len(sys.argv) > 2:
    sys.stdout.write(plugin.render().decode())
"""


def test_multiprocess_mode_sums_over_workers(tmp_path: Path) -> None:
    """Two worker processes count into PROMETHEUS_MULTIPROC_DIR; a third one's scrape sums them."""
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(tmp_path)}
    for count in ("2", "3"):
        subprocess.run([sys.executable, "-c", WORKER, count], env=env, check=True, timeout=60)
    out = subprocess.run(
        [sys.executable, "-c", WORKER, "0", "render"], env=env, check=True, timeout=60, capture_output=True
    ).stdout.decode()
    samples = parse(out)
    assert value(samples, "bifrost_async_jobs_submitted_total", request_type="embedding") == 5
    finished = "bifrost_async_jobs_finished_total"
    assert value(samples, finished, request_type="embedding", status="completed") == 5
    assert value(samples, "bifrost_async_job_duration_seconds_count", request_type="embedding") == 5
