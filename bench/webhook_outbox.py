"""What a durable webhook delivery costs: ``python -m bench.webhook_outbox [DELIVERIES] [ROUNDS]``.

Issue 14 moved webhook deliveries on a shared store from the memory of the process that ended
the job to the store's outbox (Redis: a stream with a consumer group). This times the same work
both ways, on one real ``redis-server`` and one real aiohttp receiver (its own process, always
200): ``DELIVERIES`` jobs end (their terminal write to the Redis store) and each one's signed
webhook is delivered and recorded in the history (Redis), until every delivery is reported.

* in-process: the terminal write, then ``Dispatcher.submit`` (an asyncio task per delivery);
* durable: the terminal write that also ``XADD``s the entry (one script), then this process's
  ``OutboxDeliverer`` reads (``XREADGROUP``), attempts and settles (``XACK`` + ``XDEL``).

Both legs build, sign, post and record each attempt the same way, at the same concurrency (16
attempts in flight), so the difference is the scheduling. Legs alternate (A, B, A, B...); each
figure is the median of the rounds, in deliveries per second of wall time.
"""

from __future__ import annotations

import asyncio
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

sys.path.append(str(Path(__file__).resolve().parent.parent))  # after PYTHONPATH

from bench.harness import RedisServer
from bifrost_async.builtin.webhooks.delivery import DeliveryReport
from bifrost_async.builtin.webhooks.outbox import OutboxDeliverer
from bifrost_async.builtin.webhooks.plugin import WebhookEndpoint, WebhooksPlugin
from bifrost_async.jobs import Job, JobStatus

SECRET = "whsec_MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY="
TOKEN = "bench-admin-token-0123456789"

RECEIVER = """
import sys
from aiohttp import web
async def hook(request):
    await request.read()
    return web.Response(status=200)
app = web.Application()
app.router.add_post("/hook", hook)
web.run_app(app, host="127.0.0.1", port=int(sys.argv[1]), print=lambda *_: print("ready", flush=True))
"""


class Routes:
    """What the plugin's startup reads of the middleware's routes (one type is enough here)."""

    prefix = "/v1/async"

    def __iter__(self) -> Any:
        class Spec:
            request_type, path = "embedding", "embeddings"

        return iter([Spec()])


async def redis_cpu(store: Any) -> float:
    """Seconds of CPU the Redis server has used (user + system)."""
    info = await store.redis.info("cpu")
    return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])


async def leg(
    redis_url: str, receiver_url: str, deliveries: int, durable: bool, prefix: str
) -> tuple[float, float, float]:
    """One round of ``deliveries`` jobs ending: deliveries per second of wall time, and CPU µs per
    delivery in this process and in Redis."""
    from bifrost_async_redis import RedisJobStore
    from bifrost_async_redis.options import RedisStoreOptions

    store = RedisJobStore(
        RedisStoreOptions(url=redis_url, prefix=prefix, sweep_interval=0), clock=time.time, max_jobs=0
    )
    await store.start()
    done = asyncio.Event()
    reports: list[DeliveryReport] = []

    def count(report: DeliveryReport) -> None:
        reports.append(report)
        if len(reports) >= deliveries:
            done.set()

    endpoint = WebhookEndpoint(url=receiver_url, secret=SECRET, allow_private_network=True)
    plugin = WebhooksPlugin({"billing": endpoint}, admin_token=TOKEN, on_delivery=count)

    class Middleware:
        routes = Routes()

    Middleware.store = store  # type: ignore[attr-defined]
    deliverer: OutboxDeliverer | None = None
    try:
        if durable:
            await plugin.async_jobs_startup(Middleware())  # attaches the store's outbox
            deliverer = plugin.deliverer
        else:  # the same plugin on the same store, with the in-process schedule
            plugin.records = store  # the history in Redis, as with the outbox
            for seeded in plugin.seed.values():
                await store.webhook_create(seeded.id, seeded.name, plugin.sealer.dump(seeded))
            await plugin.refresh()
            await plugin.dispatcher.start()
            plugin._jobs = store
        endpoint_id = plugin.endpoints["billing"].id
        running = []
        for i in range(deliveries):
            job = Job(id=f"{prefix}{i}", request_id=str(i), request_type="embedding",
                      status=JobStatus.PENDING, created_at=time.time(), ttl=600)  # fmt: skip
            job.metadata = {"webhook": "billing", "webhook_id": endpoint_id}
            await store.create(job)
            job.status = JobStatus.PROCESSING
            assert await store.update(job, expect=(JobStatus.PENDING,))
            running.append(job)
        started, cpu, redis_before = time.perf_counter(), time.process_time(), await redis_cpu(store)
        for job in running:
            ended = job.copy()
            ended.status, ended.status_code = JobStatus.COMPLETED, 200
            ended.completed_at, ended.expires_at = time.time(), time.time() + 600
            assert await store.update(ended, expect=(JobStatus.PROCESSING,))
            plugin.job_finished(ended)  # in-process: schedules; durable: the write enqueued it
        await asyncio.wait_for(done.wait(), 300)
        elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu
        redis_used = await redis_cpu(store) - redis_before
        assert all(r.outcome == "delivered" for r in reports), {r.outcome for r in reports}
        return deliveries / elapsed, cpu * 1e6 / deliveries, redis_used * 1e6 / deliveries
    finally:
        if deliverer is not None:
            await plugin.async_jobs_shutdown(Middleware())
        else:
            await plugin.dispatcher.stop()
        await store.close()


def main() -> None:
    deliveries = int(sys.argv[1]) if len(sys.argv) > 1 else 1000
    rounds = int(sys.argv[2]) if len(sys.argv) > 2 else 5
    redis = RedisServer()
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    receiver = subprocess.Popen(
        [sys.executable, "-c", RECEIVER, str(port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert receiver.stdout is not None and receiver.stdout.readline().strip() == "ready"
        url = f"http://127.0.0.1:{port}/hook"
        results: dict[str, list[tuple[float, float, float]]] = {"in-process": [], "durable": []}
        for r in range(rounds):
            order = ["in-process", "durable"] if r % 2 == 0 else ["durable", "in-process"]
            for name in order:
                got = asyncio.run(leg(redis.url, url, deliveries, name == "durable", f"bench{r}{name[0]}:"))
                results[name].append(got)
                rate, cpu, redis_cpu_us = got
                print(
                    f"round {r + 1} {name}: {rate:,.0f}/s, CPU {cpu:,.0f} µs + Redis {redis_cpu_us:,.0f} µs"
                )
        for i, what in enumerate(("deliveries/s (wall)", "process CPU µs/delivery", "Redis CPU µs/delivery")):
            a = statistics.median(x[i] for x in results["durable"])
            b = statistics.median(x[i] for x in results["in-process"])
            print(f"median {what}: durable {a:,.0f}, in-process {b:,.0f}, durable/in-process {a / b:.2f}")
    finally:
        receiver.terminate()
        receiver.wait()
        redis.stop()


if __name__ == "__main__":
    main()
