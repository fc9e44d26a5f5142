"""The one ``X-Forwarded-For`` rule, for every request that leaves for the upstream or the app:
the pass-through, the WebSocket relay and both job replays (``http`` and ``asgi`` providers).

The client's own ``X-Forwarded-For`` is believed only when the peer that sent it (the TCP
connection's remote address, ASGI ``scope["client"]``) is one of the operator's *trusted
proxies*: then the peer is appended to it, as every proxy in a chain does. From any other peer
the header is a claim anyone can make, so it is replaced by the peer's address; without a known
peer (a Unix socket, say) it is dropped. The other forwarding claims (``Forwarded``,
``X-Forwarded-Host``, ``X-Forwarded-Proto``) are likewise kept only from a trusted peer.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Sequence
from typing import Any

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
#: Forwarding headers other than ``X-Forwarded-For``: believed only from a trusted peer.
_CLAIMS = frozenset({b"forwarded", b"x-forwarded-host", b"x-forwarded-proto"})


def parse_trusted_proxies(value: str | Iterable[str] | None) -> tuple[str, ...]:
    """Normalise trusted proxies (addresses or CIDR networks, as a comma-separated string or a
    sequence) to canonical network strings; :class:`ValueError` names the entry that is not one."""
    if value is None:
        return ()
    items = value.split(",") if isinstance(value, str) else [str(item) for item in value]
    networks: list[str] = []
    for item in (entry.strip() for entry in items):
        if not item:
            continue
        try:
            # strict=False: "10.0.0.1/8" means the network 10.0.0.0/8, as operators write it.
            networks.append(str(ipaddress.ip_network(item, strict=False)))
        except ValueError:
            raise ValueError(f"trusted proxy {item!r} is not an IP address or CIDR network") from None
    return tuple(networks)


def networks(trusted: Iterable[str]) -> tuple[Network, ...]:
    """The parsed networks of :func:`parse_trusted_proxies` output, for :func:`forwarded_for`."""
    return tuple(ipaddress.ip_network(item, strict=False) for item in trusted)


def peer_address(scope: dict[str, Any]) -> str | None:
    """The ASGI connection's remote address (``scope["client"][0]``), if the server knows one."""
    client = scope.get("client")
    return str(client[0]) if client else None


def forwarded_for(prior: Sequence[str], peer: str | None, trusted: Sequence[Network]) -> str | None:
    """The ``X-Forwarded-For`` value to send on: ``prior`` (the values the client sent) with the
    peer appended when the peer is trusted, else the peer alone; ``None`` (send none) when there
    is no peer."""
    if peer is None:
        return None
    chain = ", ".join(value.strip() for value in prior if value.strip())
    if chain and _is_trusted(peer, trusted):
        return f"{chain}, {peer}"
    return peer


def with_forwarded_for(
    headers: list[tuple[bytes, bytes]], peer: str | None, trusted: Sequence[Network]
) -> list[tuple[bytes, bytes]]:
    """ASGI ``headers`` with their ``X-Forwarded-For`` replaced by :func:`forwarded_for`'s, and
    without the other forwarding claims unless ``peer`` is trusted."""
    prior = [value.decode("latin-1") for key, value in headers if key.lower() == b"x-forwarded-for"]
    drop = {b"x-forwarded-for"}
    if peer is None or not _is_trusted(peer, trusted):
        drop.update(_CLAIMS)
    kept = [(key, value) for key, value in headers if key.lower() not in drop]
    value = forwarded_for(prior, peer, trusted)
    if value is not None:
        kept.append((b"x-forwarded-for", value.encode("latin-1")))
    return kept


def _is_trusted(peer: str, trusted: Sequence[Network]) -> bool:
    if not trusted:  # the default: no address to parse (~6 µs of ipaddress per request)
        return False
    try:
        address = ipaddress.ip_address(peer)
    except ValueError:  # not an IP (a test client's name, a socket path): never trusted
        return False
    return any(address in network for network in trusted)
