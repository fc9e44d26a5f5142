"""Sealing with the operator's keys: round trips, rotation, tampering, context, bad keys, keygen."""

from __future__ import annotations

import base64

import pytest

from bifrost_async.cli import main
from bifrost_async.core.sealing import ENV_VAR, Keyring, SealError, generate_key

SECRET = b"Authorization: Bearer sk-live-0123456789"


def test_a_sealed_value_opens_with_its_context_and_hides_the_plaintext() -> None:
    ring = Keyring.parse(generate_key())
    sealed = ring.seal(SECRET, context=b"job-1")
    assert SECRET not in sealed and b"sk-live" not in sealed
    assert ring.open(sealed, context=b"job-1") == SECRET
    # a fresh nonce each time: the same plaintext never seals to the same bytes
    assert ring.seal(SECRET, context=b"job-1") != sealed


def test_a_value_moved_to_another_context_does_not_open() -> None:
    ring = Keyring.parse(generate_key())
    sealed = ring.seal(SECRET, context=b"job-1")
    with pytest.raises(SealError, match="does not authenticate"):
        ring.open(sealed, context=b"job-2")


@pytest.mark.parametrize("position", [0, 1, 5, 17, -1])
def test_any_flipped_byte_is_refused(position: int) -> None:
    ring = Keyring.parse(generate_key())
    sealed = bytearray(ring.seal(SECRET, context=b"job"))
    sealed[position] ^= 0x01
    with pytest.raises(SealError):
        ring.open(bytes(sealed), context=b"job")


def test_rotation_the_first_key_seals_every_key_opens() -> None:
    old, new = generate_key(), generate_key()
    before = Keyring.parse(old)
    sealed_old = before.seal(SECRET, context=b"j")
    during = Keyring.parse(f"{new}, {old}")
    assert during.key_count == 2
    assert during.open(sealed_old, context=b"j") == SECRET
    sealed_new = during.seal(SECRET, context=b"j")
    assert Keyring.parse(new).open(sealed_new, context=b"j") == SECRET
    with pytest.raises(SealError, match="not in"):  # the old key alone cannot open the new value
        before.open(sealed_new, context=b"j")
    after = Keyring.parse(new)  # old key dropped: values sealed with it are gone for good
    with pytest.raises(SealError, match="not in"):
        after.open(sealed_old, context=b"j")


def test_short_or_foreign_values_are_refused() -> None:
    ring = Keyring.parse(generate_key())
    for value in (b"", b"\x01", b"plain text that was never sealed", b"\x02" + bytes(40)):
        with pytest.raises(SealError):
            ring.open(value, context=b"j")


@pytest.mark.parametrize(
    "value, message",
    [
        ("", "empty"),
        (" , ", "empty"),
        ("abc", "key 1 is not 32 bytes"),
        (f"{generate_key()},,{generate_key()}", "empty key between commas"),
        (base64.urlsafe_b64encode(bytes(16)).decode(), "key 1 is not 32 bytes"),
        (f"{generate_key()},not*base64", "key 2"),
    ],
    # fixed ids: the values hold fresh keys, and pytest-xdist needs every worker to collect the
    # same test names
    ids=["empty", "blank-list", "short", "empty-between-commas", "16-bytes", "not-base64"],
)
def test_a_bad_key_value_is_one_line_that_never_repeats_it(value: str, message: str) -> None:
    with pytest.raises(ValueError, match=message) as caught:
        Keyring.parse(value)
    text = str(caught.value)
    assert "\n" not in text and ENV_VAR in text
    for part in value.split(","):
        if len(part.strip()) > 8:
            assert part.strip() not in text


def test_from_environ_unset_blank_and_set() -> None:
    assert Keyring.from_environ({}) is None
    assert Keyring.from_environ({ENV_VAR: "  "}) is None
    key = generate_key()
    ring = Keyring.from_environ({ENV_VAR: key})
    assert ring is not None and ring.key_count == 1
    assert key not in repr(ring)


def test_generated_keys_are_fresh_and_32_bytes() -> None:
    keys = {generate_key() for _ in range(50)}
    assert len(keys) == 50
    for key in keys:
        assert len(base64.urlsafe_b64decode(key + "=" * (-len(key) % 4))) == 32


def test_keygen_prints_one_key_that_parses(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["keygen"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 1
    Keyring.parse(lines[0]).seal(b"x", context=b"y")
