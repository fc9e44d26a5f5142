"""``python -m bifrost_async_postgres migrate|status [--url URL] [--schema NAME]``: apply the
store's schema migrations, or show the schema's version, without starting a server (for
deployments that run the store with ``migrate=false``). The URL falls back to
``$BIFROST_ASYNC_POSTGRES_URL``; it is never printed with its password."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys

import asyncpg

from . import migrations
from .options import URL_ENV, PostgresStoreOptions


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bifrost_async_postgres", description=__doc__)
    parser.add_argument("command", choices=("migrate", "status"))
    parser.add_argument("--url", default=os.environ.get(URL_ENV), help=f"[default: ${URL_ENV}]")
    parser.add_argument("--schema", default="bifrost_async", help="[default: bifrost_async]")
    args = parser.parse_args(argv)
    if not args.url:
        parser.error(f"--url is required (or set {URL_ENV})")
    try:
        options = PostgresStoreOptions.from_mapping({"url": args.url, "schema": args.schema})
    except ValueError as exc:
        parser.error(str(exc))
    try:
        return asyncio.run(_run(args.command, options))
    except (OSError, asyncpg.PostgresError, RuntimeError, TimeoutError) as exc:
        print(f"error: {options.safe_url()}: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1


async def _run(command: str, options: PostgresStoreOptions) -> int:
    conn = await asyncpg.connect(options.url, timeout=options.connect_timeout)
    try:
        if command == "migrate":
            applied = await migrations.migrate(conn, options.schema)
            done = ", ".join(map(str, applied)) if applied else "nothing to do"
            print(f"schema {options.schema} at version {migrations.latest()} ({done})")
            return 0
        have = await migrations.current_version(conn, options.schema)
        print(f"schema {options.schema} at version {have}; this plugin wants {migrations.latest()}")
        return 0 if have == migrations.latest() else 3
    finally:
        await conn.close()


if __name__ == "__main__":
    sys.exit(main())
