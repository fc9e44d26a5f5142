"""1. Pass-through overhead: a trivial non-async route through the middleware vs the bare app.

Same server process (``bench.apps:combined``): ``GET /ping`` passes through the middleware,
``GET /bare/ping`` reaches the app directly.
"""

from __future__ import annotations

from typing import Any

from .harness import LoadGen, Row, Server, Settings, alternate, fmt, measure, median, safe_ratio, started

NAME = "passthrough"
TITLE = "1. pass-through overhead"


def run(settings: Settings, load: LoadGen) -> list[Row]:
    server = Server("bench.apps:combined")
    with started(server):

        def leg(path: str) -> dict[str, Any]:
            spec = {"ports": [server.port], "path": path, "concurrency": settings.concurrency}
            spec |= {"duration": settings.duration, "warmup": settings.warmup}
            return measure([server], lambda: load.run(mode="requests", **spec))

        a, b = alternate(settings.rounds, lambda: leg("/ping"), lambda: leg("/bare/ping"))
    rate = safe_ratio(median(a, "rate"), median(b, "rate"))
    conc = settings.concurrency
    return [
        Row(
            NAME,
            f"requests/s, GET /ping, {conc} connections (through middleware vs bare)",
            fmt(median(a, "rate"), "req/s"),
            fmt(median(b, "rate"), "req/s"),
            rate,
            "≥ 0.95",
            rate >= 0.95,
            f"server CPU {median(a, 'server_cpu'):.0%} vs {median(b, 'server_cpu'):.0%} of a core",
        ),
        _latency_row(a, b, "p50_ms", "p50"),
        _latency_row(a, b, "p99_ms", "p99"),
    ]


def _latency_row(a: list[dict[str, Any]], b: list[dict[str, Any]], key: str, label: str) -> Row:
    ma, mb = median(a, key), median(b, key)
    return Row(NAME, f"{label} latency (through middleware vs bare)", fmt(ma, "ms"), fmt(mb, "ms"), ma / mb)
