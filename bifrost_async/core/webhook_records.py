"""Where webhook endpoints and their delivery history live: an optional job store capability.

A job store that also implements :class:`WebhookRecords` keeps the endpoint set managed through
``/api/webhooks`` and its delivery history, so every instance sharing the store sees the same
set (memory: one process; Redis: every process on the same server and prefix). Records are
opaque JSON documents the webhook layer renders (secrets already encrypted); a store only keeps
them, enforces unique names atomically, and counts outcomes.
``bifrost_async.testing.WebhookRecordsContract`` checks these rules.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from typing import Any, Literal, Protocol, runtime_checkable

#: Delivery records kept per endpoint (oldest dropped first): history is bounded per endpoint.
HISTORY_PER_ENDPOINT = 500

Replaced = Literal["ok", "missing", "conflict"]


@runtime_checkable
class WebhookRecords(Protocol):
    """The store capability behind the webhook management API (all methods may raise
    :class:`~bifrost_async.core.store.StoreUnavailable`)."""

    async def webhook_create(self, endpoint_id: str, name: str, document: str) -> bool:
        """Store a new endpoint; ``False`` (and nothing stored) if ``name`` is taken. Atomic."""

    async def webhook_get(self, endpoint_id: str) -> str | None:
        """The endpoint's document, or ``None``."""

    async def webhook_id_by_name(self, name: str) -> str | None:
        """The id of the endpoint called ``name``, or ``None``."""

    async def webhook_all(self) -> list[str]:
        """Every endpoint's document (any order)."""

    async def webhook_replace(self, endpoint_id: str, name: str, document: str) -> Replaced:
        """Replace an endpoint (``name`` may change): ``missing`` if unknown, ``conflict`` if
        another endpoint holds ``name``. Atomic."""

    async def webhook_delete(self, endpoint_id: str) -> bool:
        """Remove the endpoint (its history stays until it ages out); ``False`` if unknown."""

    async def webhook_add_delivery(self, endpoint_id: str, delivery_id: str, document: str) -> None:
        """Append one attempt's record; keeps the newest :data:`HISTORY_PER_ENDPOINT`."""

    async def webhook_deliveries(self, endpoint_id: str, offset: int, limit: int) -> tuple[list[str], int]:
        """One page of the endpoint's attempt records, newest first, and how many there are."""

    async def webhook_delivery(self, delivery_id: str) -> str | None:
        """One attempt's record, or ``None`` (unknown or aged out)."""

    async def webhook_count(self, endpoint_id: str, success: bool, status_code: int | None) -> None:
        """Count an attempt's outcome on the endpoint's counters (atomic increments)."""

    async def webhook_counters(self, endpoint_id: str) -> dict[str, Any]:
        """``successes``, ``failures``, ``consecutive_failures``, ``last_status_code``,
        ``last_success_at``, ``last_failure_at`` (epoch seconds; absent when never)."""


def webhook_records(store: object) -> WebhookRecords | None:
    """``store`` as :class:`WebhookRecords`, or ``None`` if it lacks the capability."""
    return store if isinstance(store, WebhookRecords) else None


class MemoryWebhookRecords:
    """:class:`WebhookRecords` in process memory (mixed into the memory job store)."""

    def __init__(self) -> None:
        self._endpoints: dict[str, tuple[str, str]] = {}  # id -> (name, document)
        self._names: dict[str, str] = {}
        self._history: dict[str, OrderedDict[str, str]] = {}
        self._delivery_owner: dict[str, str] = {}
        self._counters: dict[str, dict[str, Any]] = {}

    async def webhook_create(self, endpoint_id: str, name: str, document: str) -> bool:
        if name in self._names:
            return False
        self._names[name] = endpoint_id
        self._endpoints[endpoint_id] = (name, document)
        return True

    async def webhook_get(self, endpoint_id: str) -> str | None:
        held = self._endpoints.get(endpoint_id)
        return held[1] if held else None

    async def webhook_id_by_name(self, name: str) -> str | None:
        return self._names.get(name)

    async def webhook_all(self) -> list[str]:
        return [document for _, document in self._endpoints.values()]

    async def webhook_replace(self, endpoint_id: str, name: str, document: str) -> Replaced:
        held = self._endpoints.get(endpoint_id)
        if held is None:
            return "missing"
        if self._names.get(name, endpoint_id) != endpoint_id:
            return "conflict"
        del self._names[held[0]]
        self._names[name] = endpoint_id
        self._endpoints[endpoint_id] = (name, document)
        return "ok"

    async def webhook_delete(self, endpoint_id: str) -> bool:
        held = self._endpoints.pop(endpoint_id, None)
        if held is None:
            return False
        del self._names[held[0]]
        self._counters.pop(endpoint_id, None)
        return True

    async def webhook_add_delivery(self, endpoint_id: str, delivery_id: str, document: str) -> None:
        history = self._history.setdefault(endpoint_id, OrderedDict())
        history[delivery_id] = document
        self._delivery_owner[delivery_id] = endpoint_id
        while len(history) > HISTORY_PER_ENDPOINT:
            dropped, _ = history.popitem(last=False)
            self._delivery_owner.pop(dropped, None)

    async def webhook_deliveries(self, endpoint_id: str, offset: int, limit: int) -> tuple[list[str], int]:
        history = list(reversed(self._history.get(endpoint_id, OrderedDict()).values()))
        return history[offset : offset + limit], len(history)

    async def webhook_delivery(self, delivery_id: str) -> str | None:
        owner = self._delivery_owner.get(delivery_id)
        return None if owner is None else self._history[owner].get(delivery_id)

    async def webhook_count(self, endpoint_id: str, success: bool, status_code: int | None) -> None:
        counters = self._counters.setdefault(
            endpoint_id, {"successes": 0, "failures": 0, "consecutive_failures": 0}
        )
        now = time.time()
        if success:
            counters["successes"] += 1
            counters["consecutive_failures"] = 0
            counters["last_success_at"] = now
        else:
            counters["failures"] += 1
            counters["consecutive_failures"] += 1
            counters["last_failure_at"] = now
        if status_code is not None:
            counters["last_status_code"] = status_code

    async def webhook_counters(self, endpoint_id: str) -> dict[str, Any]:
        return dict(
            self._counters.get(endpoint_id, {"successes": 0, "failures": 0, "consecutive_failures": 0})
        )
