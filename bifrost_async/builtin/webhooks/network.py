"""The webhook SSRF guard: endpoints without ``allow_private_network`` only reach public
addresses. Names are checked when connecting (so a DNS answer that changes after validation is
still refused); IP literals, which aiohttp does not resolve, are checked before the attempt.
Link-local addresses (cloud metadata services) are refused even with the opt-in, as in Bifrost."""

from __future__ import annotations

import ipaddress
import socket
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import aiohttp.abc

from bifrost_async.builtin.webhooks.endpoints import link_local, private_address


class PublicOnlyResolver(aiohttp.abc.AbstractResolver):
    """Resolves like aiohttp but refuses names that lead to a non-public address (with
    ``private_ok``: only link-local ones): checked at connect time, so a DNS answer that changes
    after validation (rebinding) is still refused."""

    def __init__(self, *, private_ok: bool = False) -> None:
        self._inner = aiohttp.ThreadedResolver()
        self._refused = link_local if private_ok else private_address

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[Any]:
        answers = await self._inner.resolve(host, port, family)
        if any(self._refused(answer["host"]) for answer in answers):
            raise OSError(f"webhook host {host} resolves to a private network address")
        return answers

    async def close(self) -> None:
        await self._inner.close()


def refused_literal(url: str, allow_private_network: bool) -> str | None:
    """Why an IP-literal URL may not be called (aiohttp does not resolve literals), or ``None``."""
    host = (urlsplit(url).hostname or "").strip("[]")
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return None
    if link_local(str(ip)) or (not allow_private_network and private_address(str(ip))):
        return "webhook URL points at a private network address"
    return None
