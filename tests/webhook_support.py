"""Webhook test support: a real aiohttp receiver that checks signatures and answers from a
script of statuses, and a delivery-report collector tests wait on instead of sleeping."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import time
from typing import Any

from aiohttp import web

from bifrost_async.builtin.webhooks.delivery import DeliveryPolicy, DeliveryReport

SECRET = "whsec_" + base64.b64encode(b"0123456789abcdef0123456789abcdef").decode()
#: Bifrost's back-off (30 s doubling, capped at 30 min) shrunk to milliseconds.
FAST = DeliveryPolicy(backoff_scale=0.0005)


class Receiver:
    """An aiohttp server that verifies every delivery and answers from a script of statuses."""

    def __init__(
        self, statuses: list[int], *, hang_first: bool = False, on_attempt: Any = None, secret: str = SECRET
    ) -> None:
        self.statuses = statuses
        self.hang_first = hang_first
        #: Called with the attempt number before answering (e.g. to move a test clock).
        self.on_attempt = on_attempt
        self.secret = secret
        self.attempts: list[dict[str, Any]] = []
        #: Set when the first delivery attempt has arrived.
        self.arrived = asyncio.Event()
        self.runner: web.AppRunner | None = None
        self.url = ""

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        msg_id, stamp = request.headers["webhook-id"], request.headers["webhook-timestamp"]
        key = base64.b64decode(self.secret.removeprefix("whsec_"))
        expected = base64.b64encode(
            hmac.new(key, f"{msg_id}.{stamp}.".encode() + body, hashlib.sha256).digest()
        ).decode()
        signatures = [s.partition(",")[2] for s in request.headers["webhook-signature"].split()]
        self.attempts.append(
            {
                "valid": any(hmac.compare_digest(expected, s) for s in signatures),
                "id": msg_id,
                "fresh": abs(time.time() - int(stamp)) < 300,
                "body": json.loads(body),
                "headers": dict(request.headers),
                "raw": body,
            }
        )
        self.arrived.set()
        if self.on_attempt is not None:
            self.on_attempt(len(self.attempts))
        if self.hang_first and len(self.attempts) == 1:
            await asyncio.Event().wait()  # never answers: the attempt timeout must cut it off
        status = self.statuses[min(len(self.attempts) - 1, len(self.statuses) - 1)]
        return web.Response(status=status, text="ok" if status < 300 else "nope")

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/hook", self.handle)
        self.runner = web.AppRunner(app, handler_cancellation=True)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        port = self.runner.addresses[0][1]
        self.url = f"http://127.0.0.1:{port}/hook"


class Reports:
    """``on_delivery`` target: tests wait on it instead of sleeping."""

    def __init__(self) -> None:
        self.reports: list[DeliveryReport] = []
        self.changed = asyncio.Event()

    def __call__(self, report: DeliveryReport) -> None:
        self.reports.append(report)
        self.changed.set()

    async def wait_for(self, job_id: str) -> DeliveryReport:
        async def find() -> DeliveryReport:
            while True:
                for report in reversed(self.reports):
                    if report.job_id == job_id:
                        return report
                self.changed.clear()
                await self.changed.wait()

        return await asyncio.wait_for(find(), 20)
