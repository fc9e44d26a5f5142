"""``bifrost-async serve``: put the async job API in front of a synchronous gateway.

Every option comes, in order of precedence, from the command line, a ``BIFROST_ASYNC_<OPTION>``
environment variable, a TOML config file (``--config``), or its default (see :mod:`.settings`).
"""

from __future__ import annotations

import argparse
import contextlib
import inspect
import json
import os
import socket
import sys
import tempfile
import textwrap
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

from bifrost_async import __version__
from bifrost_async.client.cli import add_submit_parser, run_submit
from bifrost_async.proxy.settings import (
    BY_NAME,
    ENV_PREFIX,
    GROUPS,
    OPTIONS,
    ConfigError,
    parse_size,
    resolve,
    show_default,
)
from bifrost_async.service.config import OptionError

__all__ = ["ConfigError", "build_app", "build_parser", "main", "parse_size", "resolve", "serve", "worker_app"]


def build_parser() -> argparse.ArgumentParser:
    """The ``bifrost-async`` argument parser (subcommand ``serve``)."""
    parser = argparse.ArgumentParser(
        prog="bifrost-async",
        description="Bifrost's async job API (/v1/async/*) for any synchronous inference endpoint.",
    )
    parser.add_argument("--version", action="version", version=f"bifrost-async {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    serve = commands.add_parser(
        "serve",
        help="run the async job proxy in front of a synchronous gateway",
        description=textwrap.dedent(
            """\
            Run the async job proxy in front of a synchronous gateway.

            Requests under the async prefix (/v1/async) become jobs, run against the upstream;
            every other request is passed through to it, streamed both ways. GET /healthz
            reports the proxy and whether the upstream and the job store answer; GET /readyz
            is 503 while either does not."""
        ),
        epilog=textwrap.dedent(
            """\
            Every option is also an environment variable BIFROST_ASYNC_<OPTION> (for example
            BIFROST_ASYNC_UPSTREAM, BIFROST_ASYNC_JOB_TIMEOUT) and a key of the TOML --config
            file (job_timeout = 120; store options in a [store_options] table).
            Precedence: command line, environment, config file, defaults.

            example:
              bifrost-async serve --upstream http://127.0.0.1:9000 --port 8000 --concurrency 8
              bifrost-async serve --upstream http://gateway:8080 --store redis \\
                  --store-option url=redis://127.0.0.1:6379/0"""
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    serve.add_argument("--config", metavar="FILE", help=f"TOML config file [env: {ENV_PREFIX}CONFIG]")
    groups = {name: serve.add_argument_group(f"{name} options") for name in GROUPS}
    for option in OPTIONS:
        default = "" if option.default is None else f"default: {show_default(option)}; "
        groups[option.group].add_argument(
            option.flag,
            dest=option.name,
            metavar=option.metavar,
            choices=option.choices,
            action="append" if option.name == "store_option" else "store",
            help=f"{option.help} [{default}env: {option.env}]",
        )
    add_submit_parser(commands)
    commands.add_parser(
        "stores",
        help="list the job stores installed plugins register, whether processes share each, and its options",
        description="List every registered job store (--store NAME): whether every process pointed at "
        "the same place shares it (needed for serve --workers above 1), the plugin that registers it, "
        "and its factory's description, which names its options (--store-option KEY=VALUE).",
    )
    commands.add_parser(
        "keygen",
        help="print a fresh encryption key for BIFROST_ASYNC_ENCRYPTION_KEY",
        description="Print a fresh random key (32 bytes, URL-safe base64) for "
        "BIFROST_ASYNC_ENCRYPTION_KEY, which seals the credentials of requests stored for other "
        "instances to run. Several keys separated by commas rotate: the first seals, all open.",
    )
    return parser


def run_stores() -> int:
    """``bifrost-async stores``: each registered store, whether it is shared, its plugin, and its
    factory's docstring (where a store says which options it takes)."""
    from bifrost_async.core.hooks import PluginError, make_plugin_manager, store_registry

    try:
        stores = store_registry(make_plugin_manager())
    except PluginError as exc:  # two plugins registering one name, say
        print(f"bifrost-async: error: {exc}", file=sys.stderr)
        return 1
    for name in stores.names():
        shared = "shared by every process" if stores.is_shared(name) else "one process only"
        print(f"{name}: {shared} (plugin {stores.plugin(name)})")
        print(textwrap.indent(inspect.getdoc(stores.get(name)) or "(no description)", "    "))
    return 0


#: How ``serve --workers N`` hands its resolved options to the worker processes (JSON).
WORKER_VALUES_ENV = ENV_PREFIX + "_WORKER_VALUES"


def build_app(values: Mapping[str, Any]) -> Any:
    """The proxy as one ASGI app, with the plugins its options turn on, for resolved ``values``."""
    from bifrost_async.proxy.app import build_proxy

    upstream_options = {
        "connect_timeout": values["connect_timeout"],
        "read_timeout": values["read_timeout"],
        "connections": values["upstream_connections"],
        "keepalive": values["upstream_keepalive"],
        "health_path": values["upstream_health_path"],
    }
    middleware = {o.name: values[o.name] for o in OPTIONS if o.target == "middleware" and o.name in values}
    middleware["store_options"] = values["store_options"]
    middleware["api_keys"] = _accepted_keys(values)
    plugins, wrap = _plugins(values)
    proxy = build_proxy(values["upstream"], upstream_options=upstream_options, plugins=plugins, **middleware)
    return wrap(proxy)


def worker_app() -> Any:
    """uvicorn's app factory in each worker process of ``serve --workers N``."""
    from bifrost_async.proxy.logsetup import configure_logging

    values = json.loads(os.environ[WORKER_VALUES_ENV])
    configure_logging(values["log_level"], values["log_format"])
    return build_app(values)


def _store_is_shared(name: str) -> bool:
    """Whether the store ``name`` was registered ``shared=True`` (an unknown name is left to the
    middleware, which names the stores there are)."""
    from bifrost_async.core.hooks import PluginError, make_plugin_manager, store_registry

    try:
        return store_registry(make_plugin_manager()).is_shared(name)
    except PluginError:
        return True


def serve(values: Mapping[str, Any]) -> int:
    """Configure logging, build the proxy and run it on uvicorn until interrupted: in this
    process, or in ``workers`` processes sharing the listening socket."""
    import structlog
    import uvicorn
    from yarl import URL

    from bifrost_async.proxy.logsetup import configure_logging

    workers = values["workers"]
    if workers < 1:
        raise ConfigError("--workers must be at least 1")
    if workers > 1 and not _store_is_shared(values["store"]):
        raise ConfigError(
            f"--workers above 1 needs a store the processes share (e.g. --store redis; bifrost-async "
            f"stores lists them): with the {values['store']} store a job is visible only to the worker "
            f"that took it"
        )
    configure_logging(values["log_level"], values["log_format"])
    log = structlog.get_logger(__name__)
    app = build_app(values)  # in the parent too, so a bad option fails here, once
    listen = f"{values['host']}:{values['port']}"
    sockets: list[socket.socket] = []
    if values.get("fd") is not None:
        sockets.append(_inherited_socket(values["fd"]))
        listen = f"fd {values['fd']} ({sockets[0].getsockname()})"
    server_options: dict[str, Any] = {
        "host": values["host"],
        "port": values["port"],
        "lifespan": "on",
        # uvloop and httptools when installed (the `fast` extra), asyncio and h11 otherwise;
        # named so that nobody pins them to the slower pair by accident (bench/RESULTS.md).
        "loop": "auto",
        "http": "auto",
        "log_config": None,
        "access_log": False,
        # The upstream's own Server and Date headers pass through; ours would duplicate them.
        "server_header": False,
        "date_header": False,
        # X-Forwarded-For is ours to judge (--trusted-proxies, bifrost_async.service.forwarding): uvicorn's
        # own proxy-headers mode would trust 127.0.0.1 behind our back and rewrite the peer.
        "proxy_headers": False,
        # Longer than the idle timeout of the pools in front, so they, not we, close idle
        # connections; otherwise a request sent as we close one fails with a reset.
        "timeout_keep_alive": values["keep_alive"],
        "timeout_graceful_shutdown": int(values["shutdown_grace"]) + 5,
    }
    log.info(
        "proxy.starting",
        upstream=str(URL(values["upstream"]).with_user(None)),  # never a password in the URL
        listen=listen,
        store=values["store"],
        concurrency=values["concurrency"],
        workers=workers,
    )
    if workers == 1:
        server = uvicorn.Server(uvicorn.Config(app, **server_options))
        server.run(sockets=sockets or None)
        return 0 if server.started else 1
    os.environ[WORKER_VALUES_ENV] = json.dumps(dict(values))
    if sockets:
        server_options["fd"] = values["fd"]
    with _metrics_dir(values):
        uvicorn.run(f"{__name__}:worker_app", factory=True, workers=workers, **server_options)
    return 0


def _inherited_socket(fd: int) -> socket.socket:
    """The listening socket behind an inherited descriptor. ``TCP_NODELAY`` is set on it (Linux
    passes it on to accepted connections) because uvicorn, given a descriptor, treats it as a Unix
    socket and would leave Nagle's delay on: ~40 ms per small response."""
    try:
        sock = socket.socket(fileno=fd)
    except OSError as exc:
        raise ConfigError(f"--fd {fd}: not an open socket ({exc.strerror})") from None
    if sock.type != socket.SOCK_STREAM:
        raise ConfigError(f"--fd {fd}: not a stream socket")
    if sock.family in (socket.AF_INET, socket.AF_INET6):
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


@contextlib.contextmanager
def _metrics_dir(values: Mapping[str, Any]) -> Iterator[None]:
    """With metrics on and several workers, prometheus-client's multiprocess mode needs a
    directory named in the environment before the workers start: use the one the operator set,
    or a fresh one removed afterwards."""
    if not values.get("metrics") or os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        yield
        return
    with tempfile.TemporaryDirectory(prefix="bifrost-async-metrics-") as directory:
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = directory
        try:
            yield
        finally:
            del os.environ["PROMETHEUS_MULTIPROC_DIR"]


def _accepted_keys(values: Mapping[str, Any]) -> Any:
    """The accepted keys from ``--api-keys`` and ``--api-keys-file`` as digests, or ``None``."""
    from bifrost_async.service.credentials import AcceptedKeys

    keys = [key for key in (values.get("api_keys") or "").split(",") if key.strip()]
    if values.get("api_keys_file"):
        try:
            keys += AcceptedKeys.read_file(values["api_keys_file"])
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"cannot read api keys file {values['api_keys_file']}: {exc}") from None
    if not keys:
        if values.get("api_keys") or values.get("api_keys_file"):  # an empty list must not accept all
            raise ConfigError("--api-keys / --api-keys-file: no keys found")
        return None
    return AcceptedKeys.from_keys(keys, values.get("owner_secret"))


def _plugins(values: Mapping[str, Any]) -> tuple[list[Any], Callable[[Any], Any]]:
    """The optional plugins ``serve`` options turn on (webhooks, metrics), and the wrapper that
    puts ``/metrics`` in front of the app (identity when metrics are off)."""
    plugins: list[Any] = []
    wrap: Callable[[Any], Any] = lambda app: app  # noqa: E731
    on_delivery = None
    if values.get("metrics"):
        from bifrost_async.builtin.metrics import MetricsPlugin

        metrics = MetricsPlugin()
        plugins.append(metrics)
        wrap, on_delivery = metrics.wrap, metrics.record_webhook
    if values.get("webhooks") or values.get("admin_token"):
        from bifrost_async.builtin.webhooks.plugin import WebhooksPlugin, load_endpoints

        endpoints = {}
        if values.get("webhooks"):
            try:
                endpoints = load_endpoints(values["webhooks"])
            except (OSError, ValueError, TypeError) as exc:
                raise ConfigError(f"webhooks file {values['webhooks']}: {exc}") from None
        try:
            plugin = WebhooksPlugin(
                endpoints,
                admin_token=values.get("admin_token"),
                public_url=values.get("public_url"),
                on_delivery=on_delivery,
            )
        except ValueError as exc:  # never quotes the token
            raise ConfigError(str(exc)) from None
        plugins.append(plugin)
    return plugins, wrap


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``bifrost-async`` command and ``python -m bifrost_async``."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command == "submit":
        return run_submit(args)
    if args.command == "stores":
        return run_stores()
    if args.command == "keygen":
        from bifrost_async.core.sealing import generate_key

        print(generate_key())
        return 0
    if args.command != "serve":
        parser.print_help()
        return 2
    try:
        values = resolve(args, os.environ)
        return serve(values)
    except OptionError as exc:  # from the middleware's own checks: name the flag, not the field
        option = BY_NAME.get(exc.option.removesuffix("s")) or BY_NAME.get(exc.option)
        print(
            f"bifrost-async: error: {option.flag if option else exc.option}: {exc.problem}", file=sys.stderr
        )
        return 2
    except (ConfigError, ValueError, TypeError) as exc:
        print(f"bifrost-async: error: {exc}", file=sys.stderr)
        return 2
