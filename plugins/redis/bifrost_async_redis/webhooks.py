"""The Redis store's :class:`~bifrost_async.core.webhook_records.WebhookRecords`: managed webhook
endpoints and their delivery history, shared by every process on the same server and prefix.

Keys (under the store's prefix): ``wh:ep:<id>`` the endpoint's document (credentials already
sealed by the core), ``wh:names`` name -> id (uniqueness), ``wh:c:<id>`` counters,
``wh:dl:<id>`` the endpoint's delivery ids newest first, ``wh:d:<delivery id>`` one attempt's
record, expiring after :data:`HISTORY_SECONDS`. Name changes run in Lua: atomic.
"""

from __future__ import annotations

import time
from typing import Any

import redis.asyncio as aioredis
from bifrost_async.store import HISTORY_PER_ENDPOINT, Replaced

from .guard import guard

#: How long one attempt's record is kept (Bifrost keeps history for a retention period too).
HISTORY_SECONDS = 7 * 24 * 3600

_CREATE = """
if redis.call('HSETNX', KEYS[1], ARGV[1], ARGV[2]) == 0 then return 0 end
redis.call('SET', KEYS[2], ARGV[3])
return 1
"""
_REPLACE = """
local doc = redis.call('GET', KEYS[2])
if not doc then return 'missing' end
local holder = redis.call('HGET', KEYS[1], ARGV[1])
if holder and holder ~= ARGV[2] then return 'conflict' end
local old = cjson.decode(doc)['name']
redis.call('HDEL', KEYS[1], old)
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
redis.call('SET', KEYS[2], ARGV[3])
return 'ok'
"""
_DELETE = """
local doc = redis.call('GET', KEYS[2])
if not doc then return 0 end
redis.call('HDEL', KEYS[1], cjson.decode(doc)['name'])
redis.call('DEL', KEYS[2], KEYS[3])
return 1
"""
_ADD = """
redis.call('SET', KEYS[2], ARGV[2], 'EX', ARGV[3])
redis.call('LPUSH', KEYS[1], ARGV[1])
redis.call('EXPIRE', KEYS[1], ARGV[3])
while redis.call('LLEN', KEYS[1]) > tonumber(ARGV[4]) do
  redis.call('DEL', ARGV[5] .. redis.call('RPOP', KEYS[1]))
end
return 1
"""
_COUNT = """
if ARGV[1] == '1' then
  redis.call('HINCRBY', KEYS[1], 'successes', 1)
  redis.call('HSET', KEYS[1], 'consecutive_failures', 0, 'last_success_at', ARGV[2])
else
  redis.call('HINCRBY', KEYS[1], 'failures', 1)
  redis.call('HINCRBY', KEYS[1], 'consecutive_failures', 1)
  redis.call('HSET', KEYS[1], 'last_failure_at', ARGV[2])
end
if ARGV[3] ~= '' then redis.call('HSET', KEYS[1], 'last_status_code', ARGV[3]) end
return 1
"""


def _text(value: Any) -> str:
    """A Redis reply as text (the client answers bytes)."""
    return value.decode() if isinstance(value, bytes) else str(value)


class RedisWebhookRecords:
    """Mixed into :class:`~bifrost_async_redis.store.RedisJobStore` (which provides ``redis``
    and ``options.prefix``)."""

    options: Any

    @property
    def redis(self) -> aioredis.Redis:  # pragma: no cover - provided by the store
        raise NotImplementedError

    def _wh(self, *parts: str) -> str:
        return f"{self.options.prefix}wh:" + ":".join(parts)

    async def _eval(self, script: str, keys: list[str], args: list[str]) -> Any:
        with guard():
            return await self.redis.eval(script, len(keys), *keys, *args)

    async def webhook_create(self, endpoint_id: str, name: str, document: str) -> bool:
        keys = [self._wh("names"), self._wh("ep", endpoint_id)]
        return bool(await self._eval(_CREATE, keys, [name, endpoint_id, document]))

    async def webhook_get(self, endpoint_id: str) -> str | None:
        with guard():
            value = await self.redis.get(self._wh("ep", endpoint_id))
        return None if value is None else _text(value)

    async def webhook_id_by_name(self, name: str) -> str | None:
        with guard():
            value = await self.redis.hget(self._wh("names"), name)
        return None if value is None else _text(value)

    async def webhook_all(self) -> list[str]:
        with guard():
            ids = await self.redis.hvals(self._wh("names"))
            if not ids:
                return []
            values = await self.redis.mget([self._wh("ep", _text(i)) for i in ids])
        return [_text(value) for value in values if value is not None]

    async def webhook_replace(self, endpoint_id: str, name: str, document: str) -> Replaced:
        keys = [self._wh("names"), self._wh("ep", endpoint_id)]
        answer = await self._eval(_REPLACE, keys, [name, endpoint_id, document])
        done = _text(answer)
        return "ok" if done == "ok" else "conflict" if done == "conflict" else "missing"

    async def webhook_delete(self, endpoint_id: str) -> bool:
        keys = [self._wh("names"), self._wh("ep", endpoint_id), self._wh("c", endpoint_id)]
        return bool(await self._eval(_DELETE, keys, []))

    async def webhook_add_delivery(self, endpoint_id: str, delivery_id: str, document: str) -> None:
        # the oldest records beyond the bound go with their ids, so they cannot be redelivered
        keys = [self._wh("dl", endpoint_id), self._wh("d", delivery_id)]
        args = [delivery_id, document, str(HISTORY_SECONDS), str(HISTORY_PER_ENDPOINT), self._wh("d", "")]
        await self._eval(_ADD, keys, args)

    async def webhook_deliveries(self, endpoint_id: str, offset: int, limit: int) -> tuple[list[str], int]:
        listing = self._wh("dl", endpoint_id)
        with guard():
            total = int(await self.redis.llen(listing))
            ids = await self.redis.lrange(listing, offset, offset + limit - 1)
            values = await self.redis.mget([self._wh("d", _text(i)) for i in ids]) if ids else []
        return [_text(value) for value in values if value is not None], total

    async def webhook_delivery(self, delivery_id: str) -> str | None:
        with guard():
            value = await self.redis.get(self._wh("d", delivery_id))
        return None if value is None else _text(value)

    async def webhook_count(self, endpoint_id: str, success: bool, status_code: int | None) -> None:
        args = ["1" if success else "0", repr(time.time()), "" if status_code is None else str(status_code)]
        await self._eval(_COUNT, [self._wh("c", endpoint_id)], args)

    async def webhook_counters(self, endpoint_id: str) -> dict[str, Any]:
        with guard():
            raw = await self.redis.hgetall(self._wh("c", endpoint_id))
        counters: dict[str, Any] = {"successes": 0, "failures": 0, "consecutive_failures": 0}
        for key, value in raw.items():
            name, text = _text(key), _text(value)
            counters[name] = float(text) if name.endswith("_at") else int(text)
        return counters
