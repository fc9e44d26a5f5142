"""The ``serve`` options: their table, and merging command line, environment, config file and
defaults into typed values (in that order of precedence)."""

from __future__ import annotations

import argparse
import dataclasses
import math
import shlex
import tomllib
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from bifrost_async.core.estimate import MAX_HINT
from bifrost_async.core.numbers import parse_size as parse_size

ENV_PREFIX = "BIFROST_ASYNC_"


class ConfigError(Exception):
    """An option has a value that cannot be used."""


def parse_bool(text: str) -> bool:
    """``on``/``off``, ``true``/``false``, ``yes``/``no``, ``1``/``0``."""
    value = str(text).strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off"):
        return False
    raise ValueError(f"not a yes/no value: {text!r}")


def parse_timeout(text: str) -> float | None:
    """Seconds, or ``none``/``0`` for no limit."""
    value = str(text).strip().lower()
    return None if value in ("none", "0", "off") else float(value)


def parse_count(text: str) -> int:
    """A whole number, 0 or more (a share; 0 turns it off)."""
    value = int(str(text).strip())
    if value < 0:
        raise ValueError("must be 0 or more")
    return value


def parse_seconds(text: str) -> int:
    """Whole seconds, 1 or more."""
    value = int(str(text).strip())
    if value < 1:
        raise ValueError("must be 1 or more")
    return value


@dataclasses.dataclass(frozen=True)
class Range:
    """The values a numeric option allows: from ``low`` (excluded if ``low_open``) to ``high``."""

    low: float
    high: float | None = None
    low_open: bool = False

    def allows(self, value: float) -> bool:
        """True if ``value`` is a finite number inside the range."""
        if not math.isfinite(value) or (self.high is not None and value > self.high):
            return False
        return value > self.low if self.low_open else value >= self.low

    def __str__(self) -> str:
        low = f"{self.low:g}"
        if self.high is not None:
            return f"from {low} to {self.high:g}"
        return f"above {low}" if self.low_open else f"{low} or more"


#: The ranges most options use: a count of at least one, a duration above zero, zero or more.
AT_LEAST_ONE, POSITIVE, NOT_NEGATIVE = Range(1), Range(0, low_open=True), Range(0)
PORT = Range(0, 65535)


@dataclasses.dataclass(frozen=True)
class Option:
    """One ``serve`` option: its name, parser, default, group and where its value goes."""

    name: str
    kind: Callable[[str], Any]
    default: Any
    help: str
    group: str
    target: str  # "upstream", "middleware", "plugins", "server", "logging" or "cli"
    metavar: str = "VALUE"
    choices: tuple[str, ...] | None = None

    @property
    def flag(self) -> str:
        return "--" + self.name.replace("_", "-")

    @property
    def env(self) -> str:
        return ENV_PREFIX + self.name.upper()


_UP, _JOBS, _SERVER, _LOG = "upstream", "jobs", "server", "logging"
#: The option groups, in the order --help shows them.
GROUPS = (_UP, _SERVER, _JOBS, _LOG)


def _proxy_list(text: str) -> str:
    """``--trusted-proxies`` checked as it is read (a ``ValueError`` names the bad entry), so a
    typo is refused with the option's name before anything starts."""
    from bifrost_async.service.forwarding import parse_trusted_proxies  # ipaddress only: cheap for --help

    parse_trusted_proxies(text)
    return text


OPTIONS: tuple[Option, ...] = (
    Option("upstream", str, None, "the synchronous gateway, e.g. http://127.0.0.1:8080 (required)",
           _UP, "upstream", "URL"),
    Option("connect_timeout", float, 10.0, "seconds to connect to the upstream", _UP, "upstream", "S"),
    Option("read_timeout", parse_timeout, 600.0, "seconds to wait for the upstream's next bytes "
           "(none: no limit)", _UP, "upstream", "S"),
    Option("upstream_connections", int, 100, "connections open to the upstream at once", _UP, "upstream",
           "N"),
    Option("upstream_keepalive", float, 4.0, "seconds an idle upstream connection is reused; keep it "
           "below the upstream's own keep-alive timeout", _UP, "upstream", "S"),
    Option("upstream_health_path", str, "/", "path /healthz probes on the upstream", _UP, "upstream", "PATH"),
    Option("host", str, "127.0.0.1", "address to listen on", _SERVER, "server", "HOST"),
    Option("port", int, 8000, "port to listen on", _SERVER, "server", "PORT"),
    Option("fd", int, None, "serve on this inherited, already bound socket instead of --host/--port "
           "(socket activation)", _SERVER, "server", "FD"),
    Option("workers", int, 1, "server processes sharing the port; above 1 needs a shared store "
           "(--store redis; bifrost-async stores lists them)", _SERVER, "server", "N"),
    Option("trusted_proxies", _proxy_list, None, "comma-separated addresses/CIDR networks of proxies "
           "in front whose X-Forwarded-For is appended to; from any other peer it is replaced by the "
           "peer's address",
           _SERVER, "middleware", "CIDRS"),
    Option("keep_alive", int, 75, "seconds an idle client connection stays open; keep it above the "
           "idle timeout of the load balancer or client pool in front", _SERVER, "server", "S"),
    Option("store", str, "memory", "job store by name (plugins add more, e.g. redis)", _JOBS, "middleware",
           "NAME"),
    Option("store_option", str, None, "store option KEY=VALUE, repeatable (env: space-separated, "
           "shell-quoted: path='/srv/my jobs.db')",
           _JOBS, "middleware", "KEY=VALUE"),
    Option("queue", str, "local", "work queue by name: local (jobs run where submitted) or, with "
           "--store redis, redis (any instance runs any job; needs BIFROST_ASYNC_ENCRYPTION_KEY)",
           _JOBS, "middleware", "NAME"),
    Option("max_attempts", int, 3, "runs of a job a distributed queue allows when instances die "
           "running it (the upstream may see it again); 1: at most once", _JOBS, "middleware", "N"),
    Option("max_attempts_by_type", str, None, "per request type overrides of --max-attempts, e.g. "
           "transcription=1,embedding=5", _JOBS, "middleware", "TYPE=N,..."),
    Option("request_dir", str, None, "a directory every instance mounts where --queue redis stores "
           "requests instead of in Redis", _JOBS, "middleware", "DIR"),
    Option("max_queued_body_bytes", parse_size, 64 * 1024**2, "largest submit body a distributed "
           "queue stores in shared storage (413 beyond)", _JOBS, "middleware", "SIZE"),
    Option("concurrency", int, 4, "jobs run at once", _JOBS, "middleware", "N"),
    Option("queue_size", int, 1000, "jobs waiting for a worker before submits get 429", _JOBS, "middleware",
           "N"),
    Option("job_timeout", float, 600.0, "seconds a job may run before it fails with 504", _JOBS, "middleware",
           "S"),
    Option("max_body_bytes", parse_size, 100 * 1024**2, "largest submit body (413 beyond), e.g. 100MiB",
           _JOBS, "middleware", "SIZE"),
    Option("max_result_bytes", parse_size, 50 * 1024**2, "largest upstream answer kept as a result",
           _JOBS, "middleware", "SIZE"),
    Option("default_ttl", int, 3600, "result lifetime in seconds when the client sends none", _JOBS,
           "middleware", "S"),
    Option("max_ttl", int, 7 * 24 * 3600, "largest result lifetime a client may ask for", _JOBS, "middleware",
           "S"),
    Option("owner_max_jobs", parse_count, None, "live jobs one caller may hold in the store (anonymous "
           "callers together are one); beyond it its submits get 429 [default: half of max_jobs; 0: off]",
           _JOBS, "middleware", "N"),
    Option("owner_queue_size", parse_count, None, "jobs one caller may have queued or running in this "
           "process [default: half of --queue-size; 0: off]", _JOBS, "middleware", "N"),
    Option("max_failed_ttl", parse_seconds, 3600, "longest a failed job is kept, whatever TTL its caller "
           "asked for", _JOBS, "middleware", "S"),
    Option("lease_seconds", float, 30.0, "seconds a running job's lease lasts; its worker renews it every "
           "third of this, and a job whose lease ran out (its worker died) fails as worker lost",
           _JOBS, "middleware", "S"),
    Option("shutdown_grace", float, 30.0, "seconds running jobs get at shutdown", _JOBS, "middleware", "S"),
    Option("max_wait_seconds", float, 30.0, "longest long-poll (?wait=N, Prefer: wait=N); 0 turns it off",
           _JOBS, "middleware", "S"),
    Option("poll_pacing", float, 1.0, "a poll of an unfinished job sooner than this many seconds after "
           "its previous answer is held until the job ends or the interval passes; 0: answer at once",
           _JOBS, "middleware", "S"),
    Option("retry_after_max", int, 30, "the most a 202's Retry-After says (half the time a job probably "
           "still needs, by its type's typical run time and its queue place); 1: always 1", _JOBS,
           "middleware", "S"),
    Option("prefix", str, "/v1/async", "where the async routes live", _JOBS, "middleware", "PATH"),
    Option("owner_secret", str, None, "HMAC key for job owner digests (prefer the env var)", _JOBS,
           "middleware", "SECRET"),
    Option("api_keys", str, None, "accepted API keys / virtual keys (sk-bf-...), comma-separated; "
           "unknown ones are refused at submit (prefer the env var or --api-keys-file)", _JOBS, "cli",
           "KEYS"),
    Option("api_keys_file", str, None, "file of accepted keys, one a line (# comments)", _JOBS, "cli",
           "FILE"),
    Option("webhooks", str, None, "JSON file of webhook endpoints {name: {url, secret, enabled}}; "
           "a submit names one with x-bf-async-webhook", _JOBS, "plugins", "FILE"),
    Option("admin_token", str, None, "turns on the webhook management API /api/webhooks; operators send "
           "it as X-Bifrost-Setup-Token or Authorization: Bearer (prefer the env var)", _JOBS, "plugins",
           "TOKEN"),
    Option("public_url", str, None, "this service's public base URL, for webhook result_url", _JOBS,
           "plugins", "URL"),
    Option("metrics", parse_bool, False, "serve Prometheus metrics at /metrics (on/off)", _JOBS, "plugins",
           "on|off"),
    Option("log_level", str, "info", "log level", _LOG, "logging", "LEVEL",
           ("debug", "info", "warning", "error")),
    Option("log_format", str, "auto", "auto: console on a terminal, JSON otherwise", _LOG, "logging",
           "FORMAT", ("auto", "json", "console")),
)  # fmt: skip
BY_NAME = {option.name: option for option in OPTIONS}
#: The numbers each numeric option allows, checked wherever its value comes from (a table beside
#: OPTIONS rather than a column in it, so options added elsewhere merge without touching these).
BOUNDS: dict[str, Range] = {
    "connect_timeout": POSITIVE,
    "read_timeout": POSITIVE,  # "none" (no limit) is None and not range-checked
    "upstream_connections": AT_LEAST_ONE,
    "upstream_keepalive": POSITIVE,
    "port": PORT,
    "fd": NOT_NEGATIVE,
    "workers": AT_LEAST_ONE,
    "keep_alive": AT_LEAST_ONE,
    "concurrency": AT_LEAST_ONE,
    "max_attempts": AT_LEAST_ONE,
    "max_queued_body_bytes": AT_LEAST_ONE,
    "queue_size": AT_LEAST_ONE,
    "job_timeout": POSITIVE,
    "max_body_bytes": AT_LEAST_ONE,
    "max_result_bytes": AT_LEAST_ONE,
    "default_ttl": AT_LEAST_ONE,
    "max_ttl": AT_LEAST_ONE,
    "lease_seconds": POSITIVE,
    "shutdown_grace": NOT_NEGATIVE,
    "max_wait_seconds": NOT_NEGATIVE,
    "poll_pacing": NOT_NEGATIVE,
    "retry_after_max": Range(1, MAX_HINT),
}


def show_default(option: Option) -> str:
    """An option's default as --help shows it."""
    if option.kind is parse_bool:
        return "on" if option.default else "off"
    if option.kind is parse_size and option.default % 1024**2 == 0:
        return f"{option.default // 1024**2}MiB"
    return f"{option.default:g}" if isinstance(option.default, float) else str(option.default)


def resolve(args: argparse.Namespace, environ: Mapping[str, str]) -> dict[str, Any]:
    """Merge defaults, config file, environment and command line into typed option values."""
    values: dict[str, Any] = {o.name: o.default for o in OPTIONS if o.name != "store_option"}
    store_options: dict[str, str] = {}
    config_path = args.config or environ.get(ENV_PREFIX + "CONFIG")
    if config_path:
        for key, raw in _load_config(config_path).items():
            name = key.replace("-", "_")
            if name == "store_options" and isinstance(raw, dict):
                store_options.update({str(k): str(v) for k, v in raw.items()})
            elif name == "api_keys" and isinstance(raw, list):  # TOML: api_keys = ["sk-bf-...", ...]
                values[name] = ",".join(str(key) for key in raw)
            elif name in BY_NAME and name != "store_option":
                values[name] = _convert(BY_NAME[name], raw, f"{key} in {config_path}")
            else:
                raise ConfigError(f"unknown option {key!r} in {config_path}")
    for option in OPTIONS:
        raw = environ.get(option.env)
        if raw is None or raw == "":
            continue
        if option.name == "store_option":
            store_options.update(_pairs(split_store_options(raw, option.env), option.env))
        else:
            values[option.name] = _convert(option, raw, option.env)
    for option in OPTIONS:
        raw = getattr(args, option.name, None)
        if raw is None:
            continue
        if option.name == "store_option":
            store_options.update(_pairs(raw, option.flag))
        else:
            values[option.name] = _convert(option, raw, option.flag)
    if not values["upstream"]:
        raise ConfigError(f"an upstream is required: --upstream URL or {ENV_PREFIX}UPSTREAM")
    values["store_options"] = store_options
    return values


def _load_config(path: str) -> dict[str, Any]:
    try:
        with open(path, "rb") as handle:
            return tomllib.load(handle)
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {path} is not valid TOML: {exc}") from None


def _convert(option: Option, raw: Any, source: str) -> Any:
    if isinstance(raw, list):  # a TOML array (trusted_proxies = ["10.0.0.0/8", ...])
        raw = ",".join(str(item) for item in raw)
    try:
        value = option.kind(str(raw)) if not isinstance(raw, int | float) or option.kind is str else raw
    except ValueError as exc:
        raise ConfigError(f"{source}: invalid value {raw!r} ({exc})") from None
    if option.choices and value not in option.choices:
        raise ConfigError(f"{source}: {raw!r} is not one of {', '.join(option.choices)}")
    bounds = BOUNDS.get(option.name)
    if bounds is not None and value is not None:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ConfigError(f"{source}: {raw!r} is not a number")
        if not bounds.allows(value):
            raise ConfigError(f"{source}: {raw!r} is out of range (allowed: {bounds})")
    return value


def split_store_options(raw: str, source: str) -> list[str]:
    """The ``KEY=VALUE`` entries of ``BIFROST_ASYNC_STORE_OPTION``: separated by spaces, with
    shell quoting for a value that holds one (``path='/srv/my jobs.db' busy_timeout=5``)."""
    try:
        return shlex.split(raw)
    except ValueError as exc:  # an unclosed quote: name the variable, never echo the value
        raise ConfigError(f"{source}: cannot split into KEY=VALUE entries ({exc})") from None


def _pairs(items: Sequence[str], source: str) -> dict[str, str]:
    result: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"{source}: expected KEY=VALUE, got {item!r}")
        result[key.strip()] = value
    return result
