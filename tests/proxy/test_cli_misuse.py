"""Every misuse of the command line is refused before anything starts: one line on stderr that
names the option and what it allows, exit status 2, no traceback (issue 12, items 4 and 6).
Each case runs the real ``bifrost-async`` command in a subprocess."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.proxy_support import CLIP, ROOT

#: Nothing listens here; a command that got as far as connecting would say so instead.
NOWHERE = "http://127.0.0.1:9"


def run_cli(*argv: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """The real command; the timeout only stops a command that wrongly started serving."""
    return subprocess.run(
        [sys.executable, "-m", "bifrost_async", *argv],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        env={k: v for k, v in os.environ.items() if not k.startswith("BIFROST_ASYNC_")},
    )


def assert_refused(result: subprocess.CompletedProcess[str], *parts: str) -> None:
    """Exit 2, nothing on stdout, exactly one stderr line that contains every one of ``parts``."""
    lines = result.stderr.splitlines()
    assert result.returncode == 2, result.stderr
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    assert lines[0].startswith("bifrost-async: error: ")
    for part in parts:
        assert part in lines[0], lines[0]


@pytest.mark.parametrize(
    ("argv", "parts"),
    [
        (["--store", "mongo"], ["--store: unknown store 'mongo'", "registered: memory"]),
        (["--port", "99999"], ["--port", "'99999'", "from 0 to 65535"]),
        (["--port", "-1"], ["--port", "from 0 to 65535"]),
        (["--read-timeout", "-1"], ["--read-timeout", "above 0"]),
        (["--connect-timeout", "0"], ["--connect-timeout", "above 0"]),
        (["--job-timeout", "nan"], ["--job-timeout", "above 0"]),
        (["--concurrency", "0"], ["--concurrency", "1 or more"]),
        (["--queue-size", "-5"], ["--queue-size", "1 or more"]),
        (["--workers", "0"], ["--workers", "1 or more"]),
        (["--keep-alive", "0"], ["--keep-alive", "1 or more"]),
        (["--shutdown-grace", "-1"], ["--shutdown-grace", "0 or more"]),
        (["--poll-pacing", "-0.5"], ["--poll-pacing", "0 or more"]),
        (["--retry-after-max", "0"], ["--retry-after-max", "from 1 to 86400"]),
        (["--retry-after-max", "86401"], ["--retry-after-max", "from 1 to 86400"]),
        (["--lease-seconds", "0"], ["--lease-seconds", "'0'", "above 0"]),
        (["--lease-seconds", "soon"], ["--lease-seconds", "'soon'", "invalid value"]),
        (["--max-body-bytes", "0"], ["--max-body-bytes", "1 or more"]),
        (["--max-ttl", "10"], ["--default-ttl", "must not exceed max_ttl (10)"]),
        (
            ["--store-option", "colour=blue"],
            ["--store-option", "unknown memory store option(s): colour", "known: max_bytes"],
        ),
        (["--store-option", "max_bytes=lots"], ["--store-option", "max_bytes: not a size"]),
        (["--metrics", "maybe"], ["--metrics", "not a yes/no value"]),
        (["--queue", "kafka"], ["--queue: unknown queue 'kafka'", "registered: local"]),
        (["--max-attempts", "0"], ["--max-attempts", "1 or more"]),
        (["--max-attempts-by-type", "transcription"], ["--max-attempts-by-type", "expected TYPE=N"]),
        (["--max-queued-body-bytes", "0"], ["--max-queued-body-bytes", "1 or more"]),
    ],
)
def test_serve_misuse_is_one_line_and_exit_2(argv: list[str], parts: list[str]) -> None:
    assert_refused(run_cli("serve", "--upstream", NOWHERE, *argv), *parts)


def test_bad_redis_store_option_is_refused_before_start() -> None:
    """The Redis plugin's own option parsing runs at construction, not after uvicorn started
    (no server, no "Unclosed client session")."""
    pytest.importorskip("bifrost_async_redis")
    result = run_cli(
        "serve", "--upstream", NOWHERE, "--store", "redis", "--store-option", "max_connections=0"
    )
    assert_refused(result, "--store-option", "store 'redis'", "max_connections must be positive")
    result = run_cli("serve", "--upstream", NOWHERE, "--store", "redis", "--store-option", "hosst=x")
    assert_refused(result, "--store-option", "unknown redis store option(s): hosst", "known:")


@pytest.mark.parametrize(
    ("argv", "parts"),
    [
        (["--url", "127.0.0.1:8000"], ["--url", "'127.0.0.1:8000'", "did you mean http://127.0.0.1:8000?"]),
        (["--url", "ftp://host"], ["--url", "not an http:// or https:// URL"]),
        (
            ["--url", NOWHERE, "--type", "transcribe"],
            ["--type", "'transcribe'", "transcription, image_generation"],
        ),
        (["--url", NOWHERE, "--timeout", "0"], ["--timeout", "above 0"]),
    ],
)
def test_submit_misuse_is_one_line_and_exit_2(argv: list[str], parts: list[str]) -> None:
    args = ["--type", "transcription", *argv] if "--type" not in argv else argv
    assert_refused(run_cli("submit", str(CLIP), *args), *parts)


def test_submit_binary_file_to_a_json_type_says_what_the_type_expects() -> None:
    result = run_cli("submit", str(CLIP), "--type", "chat/completions", "--url", NOWHERE)
    assert_refused(
        result, "is not text", "chat/completions sends FILE as its JSON request body", "transcription"
    )
    assert "UnicodeDecodeError" not in result.stderr and "codec" not in result.stderr


def test_submit_json_that_is_not_an_object_is_named(tmp_path: Path) -> None:
    body = tmp_path / "body.json"
    body.write_text("[1, 2]")
    result = run_cli("submit", str(body), "--type", "embeddings", "--url", NOWHERE)
    assert_refused(result, "holds a JSON list, not an object", "embeddings")
    body.write_text("{nope")
    result = run_cli("submit", str(body), "--type", "embeddings", "--url", NOWHERE)
    assert_refused(result, "is not valid JSON", "embeddings")


def test_help_shows_the_metrics_default_as_on_or_off() -> None:
    result = run_cli("serve", "--help")
    assert result.returncode == 0
    assert "[default: off;" in " ".join(result.stdout.split()), result.stdout


def test_distributed_queue_misuse_is_refused_before_start(tmp_path: Path) -> None:
    """``--queue redis`` needs a shared store and an encryption key, refused in one line each
    (the key's message says how to make one), before any server starts."""
    pytest.importorskip("bifrost_async_redis")
    assert_refused(
        run_cli("serve", "--upstream", NOWHERE, "--queue", "redis"), "--queue", "needs a shared store"
    )
    result = run_cli("serve", "--upstream", NOWHERE, "--store", "redis", "--queue", "redis")
    assert_refused(result, "--queue", "BIFROST_ASYNC_ENCRYPTION_KEY", "bifrost-async keygen")
