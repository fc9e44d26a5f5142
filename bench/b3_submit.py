"""3. Submit latency: a small JSON body and a 25 MB multipart upload, vs the synchronous endpoint.

A is the submit (answered 202 once the body is spooled and checked); B is the same body sent to
the synchronous endpoint (answered 200 once it has read it). One request at a time. After each
upload submit the load generator waits, untimed, for the job to finish, so its background work
never overlaps the next measurement.
"""

from __future__ import annotations

from typing import Any

from .harness import (
    EMBED_BODY,
    LoadGen,
    Row,
    Server,
    Settings,
    alternate,
    fmt,
    measure,
    median,
    safe_ratio,
    started,
)

NAME = "submit"
TITLE = "3. submit latency"
MB = 1024 * 1024


def run(settings: Settings, load: LoadGen) -> list[Row]:
    size = 256 * 1024 if settings.smoke else 25 * MB
    uploads = 1 if settings.smoke else 3
    server = Server("bench.apps:combined")
    with started(server):
        port = server.port

        def small(path: str, expect: int) -> dict[str, Any]:
            spec = {"ports": [port], "method": "POST", "path": path, "body": EMBED_BODY, "expect": expect}
            spec |= {"concurrency": 1, "duration": settings.duration, "warmup": settings.warmup}
            return measure([server], lambda: load.run(mode="requests", **spec))

        def upload(path: str, expect: int) -> dict[str, Any]:
            spec = {"ports": [port], "path": path, "size": size, "count": uploads, "expect": expect}
            return load.run(mode="upload", wait_done=expect == 202, **spec)

        sa, sb = alternate(
            settings.rounds,
            lambda: small("/v1/async/embeddings", 202),
            lambda: small("/bare/v1/embeddings", 200),
        )
        ua, ub = alternate(
            settings.rounds,
            lambda: upload("/v1/async/audio/transcriptions", 202),
            lambda: upload("/bare/v1/audio/transcriptions", 200),
        )
    small_ratio = safe_ratio(median(sa, "p50_ms"), median(sb, "p50_ms"))
    upload_ratio = safe_ratio(median(ua, "p50_ms"), median(ub, "p50_ms"))
    label = f"{size // MB} MB" if size >= MB else f"{size // 1024} KB"
    return [
        Row(
            NAME,
            "p50 latency, small JSON body: submit (202) vs sync endpoint (200)",
            fmt(median(sa, "p50_ms"), "ms"),
            fmt(median(sb, "p50_ms"), "ms"),
            small_ratio,
            note=f"p99 {fmt(median(sa, 'p99_ms'), 'ms')} vs {fmt(median(sb, 'p99_ms'), 'ms')}",
        ),
        Row(
            NAME,
            f"p50 latency, {label} multipart upload: submit (202) vs sync endpoint (200)",
            fmt(median(ua, "p50_ms"), "ms"),
            fmt(median(ub, "p50_ms"), "ms"),
            upload_ratio,
            "≤ 1.1",
            upload_ratio <= 1.1,
            f"{uploads} uploads per leg, {settings.rounds} legs each",
        ),
    ]
