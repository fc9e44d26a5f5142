"""The contract of the :class:`~bifrost_async.store.WebhookRecords` store capability, as
tests (exported by :mod:`bifrost_async.testing`). Subclass it and provide a ``records``
fixture that yields a started store."""

from __future__ import annotations

import json

import pytest

from ..store import HISTORY_PER_ENDPOINT, WebhookRecords


def _doc(name: str, **more: object) -> str:
    return json.dumps({"name": name, **more})


class WebhookRecordsContract:
    """The rules every store with webhook records keeps."""

    @pytest.mark.asyncio
    async def test_names_are_unique_and_follow_renames(self, records: WebhookRecords) -> None:
        assert isinstance(records, WebhookRecords)
        assert await records.webhook_create("e1", "billing", _doc("billing"))
        assert not await records.webhook_create("e2", "billing", _doc("billing"))  # taken
        assert await records.webhook_get("e2") is None
        assert await records.webhook_create("e2", "audit", _doc("audit"))
        assert await records.webhook_id_by_name("billing") == "e1"
        assert await records.webhook_replace("e1", "audit", _doc("audit")) == "conflict"
        assert await records.webhook_replace("nope", "x", _doc("x")) == "missing"
        assert await records.webhook_replace("e1", "billing-v2", _doc("billing-v2", v=2)) == "ok"
        assert await records.webhook_id_by_name("billing") is None  # the old name is free again
        assert json.loads(await records.webhook_get("e1") or "{}") == {"name": "billing-v2", "v": 2}
        assert sorted(json.loads(d)["name"] for d in await records.webhook_all()) == ["audit", "billing-v2"]
        assert await records.webhook_delete("e1")
        assert not await records.webhook_delete("e1")
        assert await records.webhook_create("e3", "billing-v2", _doc("billing-v2"))

    @pytest.mark.asyncio
    async def test_history_is_newest_first_paged_and_bounded(self, records: WebhookRecords) -> None:
        for n in range(HISTORY_PER_ENDPOINT + 3):
            await records.webhook_add_delivery("e1", f"d{n}", json.dumps({"n": n}))
        page, total = await records.webhook_deliveries("e1", 1, 2)
        assert total == HISTORY_PER_ENDPOINT
        assert [json.loads(d)["n"] for d in page] == [HISTORY_PER_ENDPOINT + 1, HISTORY_PER_ENDPOINT]
        assert json.loads(await records.webhook_delivery("d5") or "{}") == {"n": 5}
        assert await records.webhook_delivery("d0") is None  # dropped with the oldest
        assert await records.webhook_deliveries("other", 0, 10) == ([], 0)

    @pytest.mark.asyncio
    async def test_counters(self, records: WebhookRecords) -> None:
        await records.webhook_create("e1", "billing", _doc("billing"))
        assert (await records.webhook_counters("e1"))["successes"] == 0
        await records.webhook_count("e1", False, 503)
        await records.webhook_count("e1", False, None)
        counters = await records.webhook_counters("e1")
        assert (counters["failures"], counters["consecutive_failures"], counters["last_status_code"]) == (
            2,
            2,
            503,
        )
        await records.webhook_count("e1", True, 200)
        counters = await records.webhook_counters("e1")
        assert (counters["successes"], counters["consecutive_failures"], counters["last_status_code"]) == (
            1,
            0,
            200,
        )
        assert counters["last_success_at"] >= counters["last_failure_at"] > 0
