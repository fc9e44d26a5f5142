"""The ``bifrost-async`` command line: option precedence, errors, help, and a start from env and
config file alone; plus the logging setup it installs."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest
import structlog

from bifrost_async.cli import ConfigError, build_parser, parse_size, resolve
from bifrost_async.proxy.logsetup import REDACTED, configure_logging, redact_credentials
from tests.proxy_support import ROOT, free_port, run_proxy
from tests.proxy_upstream import make_upstream


def _resolve(argv: list[str], env: dict[str, str] | None = None) -> dict[str, Any]:
    return resolve(build_parser().parse_args(["serve", *argv]), env or {})


def test_precedence_is_cli_then_env_then_config_then_default(tmp_path: Path) -> None:
    config = tmp_path / "proxy.toml"
    config.write_text(
        'upstream = "http://config:1"\nconcurrency = 3\nqueue-size = 7\nmax_body_bytes = "2MiB"\n'
        'job_timeout = 9\n[store_options]\nurl = "redis://config"\nprefix = "cfg"\n'
    )
    env = {
        "BIFROST_ASYNC_CONFIG": str(config),
        "BIFROST_ASYNC_CONCURRENCY": "5",
        "BIFROST_ASYNC_QUEUE_SIZE": "11",
        "BIFROST_ASYNC_STORE_OPTION": "url=redis://env db=2",
    }
    values = _resolve(["--concurrency", "8", "--store-option", "db=3", "--read-timeout", "none"], env)
    assert values["upstream"] == "http://config:1"  # config only
    assert values["concurrency"] == 8  # CLI beats env and config
    assert values["queue_size"] == 11  # env beats config
    assert values["max_body_bytes"] == 2 * 1024 * 1024
    assert values["job_timeout"] == 9
    assert values["read_timeout"] is None
    assert values["port"] == 8000  # default
    assert values["store_options"] == {"url": "redis://env", "prefix": "cfg", "db": "3"}


def test_owner_shares_and_failed_ttl_reach_the_middleware() -> None:
    values = _resolve(
        ["--upstream", "http://u:1", "--owner-queue-size", "0"], {"BIFROST_ASYNC_OWNER_MAX_JOBS": "9"}
    )
    assert (values["owner_max_jobs"], values["owner_queue_size"], values["max_failed_ttl"]) == (9, 0, 3600)
    assert _resolve(["--upstream", "http://u:1"])["owner_max_jobs"] is None  # half of max_jobs


def test_store_option_reaches_the_store_options() -> None:
    values = _resolve(
        ["--upstream", "http://u:1", "--store", "redis", "--store-option", "url=redis://h:6379/0"]
    )
    assert values["store"] == "redis"
    assert values["store_options"] == {"url": "redis://h:6379/0"}


@pytest.mark.parametrize(
    ("argv", "env", "message"),
    [
        ([], {}, "an upstream is required"),
        (["--upstream", "http://u:1", "--concurrency", "many"], {}, "--concurrency: invalid value"),
        (["--upstream", "http://u:1"], {"BIFROST_ASYNC_PORT": "x"}, "BIFROST_ASYNC_PORT: invalid value"),
        (["--upstream", "http://u:1", "--store-option", "novalue"], {}, "expected KEY=VALUE"),
        (["--upstream", "http://u:1"], {"BIFROST_ASYNC_LOG_FORMAT": "xml"}, "is not one of"),
        (["--upstream", "http://u:1", "--owner-max-jobs", "-1"], {}, "--owner-max-jobs: invalid value"),
        (
            ["--upstream", "http://u:1"],
            {"BIFROST_ASYNC_MAX_FAILED_TTL": "0"},
            "MAX_FAILED_TTL: invalid value",
        ),
    ],
)
def test_bad_values_are_named(argv: list[str], env: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        _resolve(argv, env)


def test_unknown_config_key_is_an_error(tmp_path: Path) -> None:
    config = tmp_path / "c.toml"
    config.write_text('upstream = "http://u:1"\nconcurency = 3\n')
    with pytest.raises(ConfigError, match="unknown option 'concurency'"):
        _resolve(["--config", str(config)])


def test_sizes() -> None:
    assert parse_size("1048576") == 1048576
    assert parse_size("512K") == 512 * 1024
    assert parse_size("100MiB") == 100 * 1024**2
    assert parse_size("1g") == 1024**3
    with pytest.raises(ValueError):
        parse_size("lots")


def test_serve_leaves_the_loop_and_parser_to_uvicorns_auto(
    monkeypatch: pytest.MonkeyPatch, restore_logging: None
) -> None:
    """``serve`` runs on uvloop and httptools when they are installed (the ``fast`` extra): it
    passes uvicorn ``auto`` for both, whatever this environment has."""
    import uvicorn

    from bifrost_async import cli

    configs: list[uvicorn.Config] = []

    class Recorder:
        started = True

        def __init__(self, config: uvicorn.Config) -> None:
            configs.append(config)

        def run(self, sockets: Any = None) -> None:
            pass

    monkeypatch.setattr(uvicorn, "Server", Recorder)
    assert cli.serve(_resolve(["--upstream", "http://127.0.0.1:9", "--log-level", "warning"])) == 0
    [config] = configs
    assert (config.loop, config.http) == ("auto", "auto")


def test_help_and_errors_from_the_real_command() -> None:
    run = [sys.executable, "-m", "bifrost_async"]
    help_text = subprocess.run(
        [*run, "serve", "--help"], capture_output=True, text=True, cwd=ROOT, check=True
    ).stdout
    for flag in ("--upstream", "--store-option", "--concurrency", "--log-format", "BIFROST_ASYNC_UPSTREAM"):
        assert flag in help_text
    missing = subprocess.run(
        [*run, "serve"], capture_output=True, text=True, cwd=ROOT, env={"PATH": "/usr/bin:/bin"}, check=False
    )
    assert missing.returncode == 2
    assert "an upstream is required" in missing.stderr
    bad_upstream = subprocess.run(
        [*run, "serve", "--upstream", "ftp://x"], capture_output=True, text=True, cwd=ROOT, check=False
    )
    assert bad_upstream.returncode == 2
    assert "must be an http(s) URL" in bad_upstream.stderr
    not_a_socket = subprocess.run(
        [*run, "serve", "--upstream", "http://127.0.0.1:9", "--fd", "0"],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        cwd=ROOT,
        check=False,
    )
    assert not_a_socket.returncode == 2
    assert "--fd 0: not an open socket" in not_a_socket.stderr


async def test_starts_from_environment_and_config_file(aiohttp_server: Any, tmp_path: Path) -> None:
    upstream = await aiohttp_server(make_upstream())
    config = tmp_path / "proxy.toml"
    config.write_text(f'upstream = "http://127.0.0.1:{upstream.port}"\nconcurrency = 2\n')
    env = {"BIFROST_ASYNC_CONFIG": str(config), "BIFROST_ASYNC_PORT": str(free_port())}
    # Neither --upstream nor --port on the command line: one comes from the file, one from the env.
    async with run_proxy(None, env=env) as proxy, httpx.AsyncClient() as client:
        health = (await client.get(f"{proxy.url}/healthz")).json()
        assert health["upstream"]["url"] == f"http://127.0.0.1:{upstream.port}"
        assert health["upstream"]["ok"] is True


def test_redaction_processor_scrubs_keys_headers_and_pairs() -> None:
    event = {
        "event": "x",
        "authorization": "Bearer a",
        "headers": {"X-Api-Key": "b", "content-type": "json"},
        "raw": [(b"x-bf-vk", b"c"), (b"accept", b"*/*")],
        "nested": {"list": [{"Cookie": "d"}]},
    }
    out = redact_credentials(None, "info", event)
    assert out["authorization"] == REDACTED
    assert out["headers"] == {"X-Api-Key": REDACTED, "content-type": "json"}
    assert out["raw"] == [(b"x-bf-vk", REDACTED), (b"accept", b"*/*")]
    assert out["nested"] == {"list": [{"Cookie": REDACTED}]}


@pytest.fixture
def restore_logging() -> Any:
    """configure_logging changes process-wide state; put it back for the other tests."""
    root = logging.getLogger()
    saved = (root.handlers[:], root.level)
    uvicorn_saved = {
        n: (logging.getLogger(n).handlers[:], logging.getLogger(n).propagate, logging.getLogger(n).level)
        for n in UVICORN
    }
    for name in UVICORN:  # an earlier in-process uvicorn (log_level="warning") set these levels
        logging.getLogger(name).setLevel(logging.NOTSET)
    yield
    structlog.reset_defaults()
    root.handlers[:], root.level = saved[0], saved[1]
    for name, (handlers, propagate, level) in uvicorn_saved.items():
        logging.getLogger(name).handlers[:] = handlers
        logging.getLogger(name).propagate = propagate
        logging.getLogger(name).setLevel(level)


UVICORN = ("uvicorn", "uvicorn.error", "uvicorn.access")


def test_configure_logging_json_renders_structlog_and_stdlib(
    capsys: pytest.CaptureFixture[str], restore_logging: None
) -> None:
    configure_logging("info", "json")
    structlog.get_logger("t").info("hello.event", authorization="Bearer zzz", n=1)
    logging.getLogger("uvicorn.error").info("from stdlib")
    structlog.get_logger("t").debug("hidden")
    try:
        raise ValueError("boom")
    except ValueError:
        secret_local = "sk-local-secret"  # noqa: F841 - a frame local that must not be rendered
        structlog.get_logger("t").exception("failed.event")
    err = capsys.readouterr().err
    lines = [json.loads(line) for line in err.splitlines()]
    assert lines[0]["event"] == "hello.event" and lines[0]["authorization"] == REDACTED
    assert lines[0]["level"] == "info" and "timestamp" in lines[0]
    assert lines[1]["event"] == "from stdlib"
    assert lines[2]["event"] == "failed.event" and lines[2]["exception"][0]["exc_type"] == "ValueError"
    assert len(lines) == 3
    assert "sk-local-secret" not in err


def test_configure_logging_console(capsys: pytest.CaptureFixture[str], restore_logging: None) -> None:
    configure_logging("warning", "console")
    structlog.get_logger("t").warning("console.event", x_api_key="k-123")
    structlog.get_logger("t").info("hidden")
    err = capsys.readouterr().err
    assert "console.event" in err and REDACTED in err and "k-123" not in err
    assert "hidden" not in err


def test_accepted_keys_from_option_env_toml_and_file(tmp_path: Path) -> None:
    from bifrost_async.cli import _accepted_keys

    key_file = tmp_path / "keys.txt"
    key_file.write_text("# ops list\nsk-bf-from-file\n\n")
    config = tmp_path / "proxy.toml"
    config.write_text('upstream = "http://u:1"\napi_keys = ["sk-bf-from-toml", "sk-live-toml"]\n')
    from_toml = _accepted_keys(_resolve([], {"BIFROST_ASYNC_CONFIG": str(config)}))
    assert from_toml.check(b"x-bf-vk", b"sk-bf-from-toml") and from_toml.check(b"x-api-key", b"sk-live-toml")
    values = _resolve(
        ["--upstream", "http://u:1", "--api-keys-file", str(key_file)],
        {"BIFROST_ASYNC_API_KEYS": "sk-bf-env,sk-x"},
    )
    keys = _accepted_keys(values)
    for key in (b"sk-bf-from-file", b"sk-bf-env", b"sk-x"):
        assert keys.check(b"authorization", b"Bearer " + key), key
    assert not keys.check(b"x-bf-vk", b"sk-bf-from-toml")
    assert "sk-bf-env" not in repr(keys)
    empty = tmp_path / "empty.txt"
    empty.write_text("# nothing\n")
    with pytest.raises(ConfigError, match="no keys found"):
        _accepted_keys(_resolve(["--upstream", "http://u:1", "--api-keys-file", str(empty)]))


def test_unreadable_api_keys_file_is_one_line_and_status_2(tmp_path: Path) -> None:
    argv = ["serve", "--upstream", "http://127.0.0.1:9", "--api-keys-file", str(tmp_path / "nope.txt")]
    missing = subprocess.run(
        [sys.executable, "-m", "bifrost_async", *argv], capture_output=True, text=True, cwd=ROOT, check=False
    )
    assert missing.returncode == 2
    assert missing.stderr.strip().count("\n") == 0 and "cannot read api keys file" in missing.stderr
