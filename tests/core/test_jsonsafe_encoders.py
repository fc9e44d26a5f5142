"""``jsonsafe.dumps`` writes the same values with orjson (the ``fast-json`` extra) as with the
standard library, odd values included: what orjson refuses takes the scrubbing path."""

from __future__ import annotations

import json
import math
from typing import Any

import pytest

from bifrost_async.core import jsonsafe


def nested(depth: int) -> list[Any]:
    root: list[Any] = []
    inner = root
    for _ in range(depth - 1):
        inner.append([])
        inner = inner[0]
    return root


VALUES: list[Any] = [
    {"id": "x", "status": "pending", "created_at": "2026-12-03T11:09:09.123Z"},
    {"result": {"embedding": [0.1, 1e-05, 1.5e16, -0.0, 3]}, "text": "héllo ✓ 🎉"},
    {"bad": [math.nan, math.inf, -math.inf]},
    {"lone": "a\ud800b", "\udfffkey": 1},
    {"huge": 2**70, "neg": -(2**65)},
    {1: "int key", None: "null key"},
    nested(300),
]


@pytest.fixture(params=["stdlib", "orjson"])
def encoder(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    if request.param == "stdlib":
        monkeypatch.setattr(jsonsafe, "fast_dumps", None)
    else:
        orjson = pytest.importorskip("orjson")
        monkeypatch.setattr(jsonsafe, "fast_dumps", orjson.dumps)
    return str(request.param)


@pytest.mark.parametrize("value", VALUES, ids=range(len(VALUES)))
def test_both_encoders_write_the_same_strict_json(encoder: str, value: Any) -> None:
    written = jsonsafe.dumps(value)
    text = written.decode("utf-8")  # strict UTF-8: no lone surrogate got through

    def refuse(name: str) -> None:
        raise AssertionError(f"{name} written")

    parsed = json.loads(text, parse_constant=refuse)
    saved = jsonsafe.fast_dumps
    try:
        jsonsafe.fast_dumps = None
        reference = json.loads(jsonsafe.dumps(value))
    finally:
        jsonsafe.fast_dumps = saved
    assert parsed == reference  # the same values whichever encoder wrote them
