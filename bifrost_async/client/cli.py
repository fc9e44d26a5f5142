"""``bifrost-async submit``: send a file as an async job and, with ``--wait``, wait for its result.

The job (or, with ``--wait``, its final state) is printed to stdout as JSON; progress goes to
stderr, as a live status line on a terminal and as one plain line per status change otherwise.
Exit status: 0 completed (or submitted, without ``--wait``), 1 failed, 2 refused or usage error,
3 still running at ``--timeout``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TextIO

import aiohttp
from yarl import URL

from bifrost_async.client import AsyncJobsClient, AsyncJobsError, JobResult, WaitTimeout, type_path
from bifrost_async.service.routes import DEFAULT_ROUTES, RouteSpec

API_KEY_ENV = "BIFROST_ASYNC_API_KEY"
_SPINNER = "|/-\\"


def add_submit_parser(commands: Any) -> argparse.ArgumentParser:
    """Add the ``submit`` subcommand to an ``add_subparsers()`` object."""
    parser: argparse.ArgumentParser = commands.add_parser(
        "submit",
        help="submit a file as an async job and optionally wait for its result",
        description="Submit FILE to an async job route; with --wait, poll until the job ends.",
        epilog="example:\n  bifrost-async submit clip.wav --type transcription "
        "--url http://127.0.0.1:8000 --model whisper-1 --wait",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    configure_parser(parser)
    return parser


def configure_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("file", metavar="FILE", help="the upload (multipart types) or the JSON body (others)")
    parser.add_argument("--type", required=True, help="request type or path, e.g. transcription")
    parser.add_argument("--url", required=True, help="base URL of the server, e.g. http://127.0.0.1:8000")
    parser.add_argument("--model", help="the model field (overrides one in a JSON body)")
    parser.add_argument("--field", action="append", default=[], metavar="K=V", help="extra form field")
    parser.add_argument("--api-key", help=f"sent as a Bearer token [env: {API_KEY_ENV}]")
    parser.add_argument("--webhook", help="name of a configured webhook to call when the job ends")
    parser.add_argument(
        "--idempotency-key",
        help="sent as Idempotency-Key: the same key and file again return the first job, never run twice",
    )
    parser.add_argument("--wait", action="store_true", help="poll until the job completes or fails")
    parser.add_argument("--timeout", type=float, default=None, help="give up waiting after this many seconds")
    parser.add_argument("--prefix", default="/v1/async", help="the async route prefix")


class Progress:
    """Status while waiting: a redrawn line on a terminal, plain lines on status changes otherwise."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream
        self.tty = stream.isatty()
        self.started = time.monotonic()
        self.last_status = ""
        self.ticks = 0

    def update(self, job: JobResult) -> None:
        elapsed = time.monotonic() - self.started
        if self.tty:
            self.ticks += 1
            spin = _SPINNER[self.ticks % len(_SPINNER)]
            self.stream.write(f"\r{spin} job {job.id} {job.status} {elapsed:5.1f}s\x1b[K")
        elif job.status != self.last_status:
            self.stream.write(f"job {job.id} {job.status} after {elapsed:.1f}s\n")
        self.last_status = job.status
        self.stream.flush()

    def finish(self) -> None:
        if self.tty:
            self.stream.write("\n")
            self.stream.flush()


def _fields(pairs: Sequence[str]) -> dict[str, str]:
    fields = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep:
            raise ValueError(f"--field {pair!r} is not KEY=VALUE")
        fields[key] = value
    return fields


class UsageError(ValueError):
    """A misused ``submit`` option or an unusable FILE: one line, exit status 2."""


def check_args(args: argparse.Namespace) -> RouteSpec | None:
    """Refuse bad options before anything is read or sent; the route of ``--type`` (``None`` for
    a custom path the default table does not know, which must contain a ``/``)."""
    url = URL(args.url)
    if url.scheme not in ("http", "https") or not url.host:
        hint = f"; did you mean http://{args.url}?" if "://" not in args.url else ""
        raise UsageError(f"--url: {args.url!r} is not an http:// or https:// URL{hint}")
    if args.timeout is not None and not (args.timeout > 0 and math.isfinite(args.timeout)):
        raise UsageError(f"--timeout: {args.timeout!r} is out of range (allowed: above 0 seconds)")
    path = type_path(args.type)
    spec = next((s for s in DEFAULT_ROUTES if s.path == path), None)
    if spec is None and "/" not in path:
        names = ", ".join(s.request_type for s in DEFAULT_ROUTES)
        raise UsageError(
            f"--type: unknown request type {args.type!r}; request types: {names} "
            "(or a route path such as audio/transcriptions)"
        )
    return spec


def json_body(content: bytes, spec: RouteSpec, file: str) -> dict[str, Any]:
    """FILE as the JSON object a JSON type takes, or a :class:`UsageError` that says so."""
    expects = f"--type {spec.path} sends FILE as its JSON request body (a JSON object)"
    try:
        body = json.loads(content.decode("utf-8"))
    except UnicodeDecodeError:
        raise UsageError(
            f"{file} is not text: {expects}; to upload a file, use a multipart type such as transcription"
        ) from None
    except json.JSONDecodeError as exc:
        raise UsageError(f"{file} is not valid JSON ({exc}): {expects}") from None
    if not isinstance(body, dict):
        raise UsageError(f"{file} holds a JSON {type(body).__name__}, not an object: {expects}")
    return body


async def submit_file(args: argparse.Namespace, content: bytes, out: TextIO, err: TextIO) -> int:
    """Run ``submit`` for parsed ``args`` with the file's ``content``; returns the exit status."""
    spec = check_args(args)
    path = type_path(args.type)
    fields = _fields(args.field)
    api_key = args.api_key or os.environ.get(API_KEY_ENV)
    body = json_body(content, spec, args.file) if spec is not None and spec.body == "json" else None
    key = args.idempotency_key
    async with AsyncJobsClient(args.url, api_key=api_key, prefix=args.prefix) as client:
        try:
            if body is not None:
                body.update(fields)
                if args.model:
                    body["model"] = args.model
                job = await client.submit(path, json=body, webhook=args.webhook, idempotency_key=key)
            else:  # multipart (also for custom types the default table does not know)
                file_field = spec.file_fields[0] if spec is not None else "file"
                if args.model:
                    fields["model"] = args.model
                upload = (Path(args.file).name, content, "application/octet-stream")
                job = await client.submit(
                    path, data=fields, files={file_field: upload}, webhook=args.webhook, idempotency_key=key
                )
            if args.wait:
                progress = Progress(err)
                progress.update(job)
                try:
                    job = await client.wait(job, args.timeout, on_poll=progress.update)
                finally:
                    progress.finish()
        except WaitTimeout as exc:
            out.write(json.dumps(_public(exc.job), indent=2) + "\n")
            err.write(f"bifrost-async: job {exc.job.id} still {exc.job.status} after {args.timeout}s\n")
            return 3
        except AsyncJobsError as exc:
            err.write(f"bifrost-async: error: {exc}\n")
            return 2
    out.write(json.dumps(_public(job), indent=2, ensure_ascii=False) + "\n")
    return 1 if job.status == "failed" else 0


def _public(job: JobResult) -> dict[str, Any]:
    fields = ("id", "request_id", "status", "created_at", "completed_at", "expires_at", "status_code")
    body = {name: getattr(job, name) for name in fields if getattr(job, name) is not None}
    if job.status == "completed":
        body["result"] = job.result
    if job.error is not None:
        body["error"] = job.error
    return body


def run_submit(args: argparse.Namespace) -> int:
    """Entry for the ``submit`` subcommand of ``bifrost-async``."""
    try:
        check_args(args)  # a bad option is named before the file is read
        content = Path(args.file).read_bytes()
        return asyncio.run(submit_file(args, content, sys.stdout, sys.stderr))
    except aiohttp.ClientError as exc:  # could not reach the server: say so, no traceback
        print(f"bifrost-async: error: cannot reach {args.url}: {exc}", file=sys.stderr)
        return 2
    except (OSError, ValueError) as exc:
        print(f"bifrost-async: error: {exc}", file=sys.stderr)
        return 2


def main(argv: Sequence[str] | None = None) -> int:
    """Stand-alone entry (``python -m bifrost_async.client.cli``), same options as ``submit``."""
    parser = argparse.ArgumentParser(prog="bifrost-async submit")
    configure_parser(parser)
    return run_submit(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
