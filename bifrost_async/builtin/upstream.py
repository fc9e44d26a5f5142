"""One upstream gateway, one long-lived aiohttp session: shared by the pass-through and the
``http`` provider, plus the header rules and the error wording both of them use."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Iterable, Mapping
from typing import Any

import aiohttp
from multidict import CIMultiDict
from yarl import URL

#: Headers that describe one hop, not the message (RFC 9110 section 7.6.1), plus the
#: proxy-era ``proxy-connection``; never forwarded in either direction.
HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "proxy-connection",
        "te",
        "trailer",
        "trailers",
        "transfer-encoding",
        "upgrade",
    }
)
#: Seconds our HTTP clients (the upstream session, the Python client, webhook deliveries) keep an
#: idle connection for reuse: below uvicorn's default keep-alive of 5 s, so that we, not the
#: server, close an idle connection; a request sent just as the server closes one fails with a
#: reset (and a POST is never retried).
IDLE_KEEPALIVE_SECONDS = 4.0
#: Request headers the proxy sets itself: ``host`` is the upstream's, ``expect`` was already
#: answered to the client by the server in front of us.
_REQUEST_DROP = frozenset({"host", "expect"})


class UnsafeTarget(ValueError):
    """A request target that is not origin-form (``/path``): absolute-form, authority-form,
    asterisk-form or garbage such as ``@evil.example/``; it is never sent upstream."""

    def __init__(self, target: str) -> None:
        super().__init__("the request target must be a path starting with '/'")
        self.target = target


def is_origin_form(path: str) -> bool:
    """True for an origin-form request path (RFC 9112 section 3.2.1): ``/`` then no whitespace,
    control character, ``#`` or ``?`` (the query travels separately)."""
    return path[:1] == "/" and not any(ch in path for ch in "#?") and path.isprintable() and " " not in path


@dataclasses.dataclass(frozen=True)
class UpstreamOptions:
    """How to reach the upstream. Durations are seconds; ``None`` means no limit."""

    url: str
    #: Seconds to open a TCP connection.
    connect_timeout: float = 10.0
    #: Seconds to wait for the next bytes of a response (also for its head).
    read_timeout: float | None = 600.0
    #: Connections open to the upstream at once (the rest wait for one).
    connections: int = 100
    #: Seconds an idle connection is kept for reuse; keep it below the upstream's own idle
    #: timeout (see :data:`IDLE_KEEPALIVE_SECONDS`).
    keepalive: float = IDLE_KEEPALIVE_SECONDS
    #: Path probed by ``/healthz``; any HTTP answer counts as "the upstream answers".
    health_path: str = "/"
    #: Seconds the health probe waits.
    health_timeout: float = 2.0

    def __post_init__(self) -> None:
        url = URL(self.url)
        if url.scheme not in ("http", "https") or not url.host:
            raise ValueError(f"upstream must be an http(s) URL with a host, got {self.url!r}")
        if url.path not in ("", "/") or url.query_string or url.fragment:
            # Request paths go upstream as the client sent them (/v1/chat/completions); a base
            # path would be prepended to each of them (/v1/v1/...) and every job would fail 404.
            origin = str(url.with_path("").with_query(None).with_fragment(None).with_user(None))
            raise ValueError(
                f"upstream must be the gateway's origin without a path: pass {origin} "
                f"(clients' paths such as /v1/chat/completions are sent on as they are)"
            )
        if not is_origin_form(self.health_path):
            raise ValueError(f"health_path must be a path starting with '/', got {self.health_path!r}")
        if self.connections <= 0:
            raise ValueError("connections must be positive")
        if self.keepalive <= 0:
            raise ValueError("keepalive must be positive")

    @classmethod
    def from_mapping(cls, options: Mapping[str, Any]) -> UpstreamOptions:
        """Build from provider options, naming any unknown key."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(options) - known)
        if unknown:
            raise TypeError(f"unknown upstream option(s): {', '.join(unknown)}")
        return cls(**options)


class Upstream:
    """An upstream and its one ``aiohttp.ClientSession``.

    :meth:`open` and :meth:`close` are counted, so the pass-through app and the provider can
    both hold it and the session closes when the last one lets go.
    """

    def __init__(self, options: UpstreamOptions) -> None:
        self.options = options
        base = URL(options.url)
        self.base_url = base.with_path("").with_query(None).with_fragment(None)
        self._session: aiohttp.ClientSession | None = None
        self._users = 0
        self._lock = asyncio.Lock()

    async def open(self) -> None:
        """Take a hold on the session, creating it on first use (inside the running loop)."""
        async with self._lock:
            self._users += 1
            if self._session is None:
                opts = self.options
                self._session = aiohttp.ClientSession(
                    connector=aiohttp.TCPConnector(
                        limit=opts.connections,
                        limit_per_host=opts.connections,
                        keepalive_timeout=opts.keepalive,
                    ),
                    timeout=aiohttp.ClientTimeout(
                        total=None, sock_connect=opts.connect_timeout, sock_read=opts.read_timeout
                    ),
                    # A shared session must never replay one caller's cookies to another.
                    cookie_jar=aiohttp.DummyCookieJar(),
                    # The pass-through relays encoded bytes as they are; the provider asks for
                    # decoding per request.
                    auto_decompress=False,
                    trust_env=False,
                )

    async def close(self) -> None:
        """Let go of the session; the last holder closes it."""
        async with self._lock:
            self._users = max(0, self._users - 1)
            if self._users == 0 and self._session is not None:
                session, self._session = self._session, None
                await session.close()

    @property
    def session(self) -> aiohttp.ClientSession:
        if self._session is None:
            raise RuntimeError("the upstream session is not open")
        return self._session

    @property
    def is_open(self) -> bool:
        return self._session is not None

    def url(self, raw_path: bytes | str, query_string: bytes = b"") -> URL:
        """The upstream URL for an origin-form request path, kept byte for byte (already
        percent-encoded). Built from parts, never by concatenation, so nothing in the path or
        query can change the host; a path that is not origin-form raises :class:`UnsafeTarget`."""
        path = raw_path.decode("latin-1") if isinstance(raw_path, bytes) else raw_path
        if not is_origin_form(path):
            raise UnsafeTarget(path)
        base = self.base_url
        return URL.build(
            scheme=base.scheme,
            user=base.raw_user,
            password=base.raw_password,
            host=base.raw_host or "",
            port=base.explicit_port,
            path=path,
            query_string=query_string.decode("latin-1"),
            encoded=True,
        )

    async def probe(self) -> dict[str, Any]:
        """Ask the upstream's health path: ``{"ok": True, "status": 200}`` or
        ``{"ok": False, "error": "..."}``. Any HTTP answer counts as ok."""
        timeout = aiohttp.ClientTimeout(total=self.options.health_timeout)
        try:
            async with self.session.get(
                self.url(self.options.health_path), timeout=timeout, allow_redirects=False
            ) as response:
                return {"ok": True, "status": response.status}
        except (aiohttp.ClientError, TimeoutError) as exc:
            return {"ok": False, "error": describe_failure(exc, self.options)[2]}


def forward_headers(headers: Iterable[tuple[bytes, bytes]], *, drop: Iterable[str] = ()) -> CIMultiDict[str]:
    """Request headers for the upstream: everything the caller sent (auth included) except
    hop-by-hop headers, those named in ``Connection``, ``host``, ``expect`` and ``drop``."""
    pairs = [(k.decode("latin-1").lower(), v.decode("latin-1")) for k, v in headers]
    skip = HOP_BY_HOP | _REQUEST_DROP | set(drop) | _connection_tokens(pairs)
    return CIMultiDict((k, v) for k, v in pairs if k not in skip)


def response_headers(
    raw: Iterable[tuple[bytes, bytes]], *, drop: Iterable[str] = ()
) -> list[tuple[bytes, bytes]]:
    """Response headers for the client, as ASGI pairs, without hop-by-hop headers."""
    pairs = [(k.lower(), v) for k, v in raw]
    text_pairs = [(k.decode("latin-1"), v.decode("latin-1")) for k, v in pairs]
    skip = HOP_BY_HOP | set(drop) | _connection_tokens(text_pairs)
    return [(k, v) for k, v in pairs if k.decode("latin-1") not in skip]


def _connection_tokens(pairs: Iterable[tuple[str, str]]) -> set[str]:
    """Header names listed in ``Connection`` are hop-by-hop too."""
    names: set[str] = set()
    for key, value in pairs:
        if key == "connection":
            names.update(token.strip().lower() for token in value.split(",") if token.strip())
    return names


def describe_failure(exc: BaseException, options: UpstreamOptions) -> tuple[int, str, str]:
    """``(status, code, message)`` for a failed upstream exchange: 504 for timeouts, 502 for
    everything else. The message names the upstream and what happened, never a header."""
    where = f"upstream {URL(options.url).host}:{URL(options.url).port}"
    if isinstance(exc, aiohttp.ConnectionTimeoutError):
        return (
            504,
            "upstream_timeout",
            f"{where} did not accept a connection within {options.connect_timeout:g} s",
        )
    if isinstance(exc, TimeoutError):
        limit = f" within {options.read_timeout:g} s" if options.read_timeout else ""
        return 504, "upstream_timeout", f"{where} did not answer{limit} (read timeout)"
    if isinstance(exc, aiohttp.ClientConnectorError):
        reason = exc.os_error.strerror or type(exc.os_error).__name__
        return 502, "upstream_unreachable", f"{where} is unreachable: {reason}"
    if isinstance(exc, aiohttp.ServerDisconnectedError):
        return 502, "upstream_disconnected", f"{where} closed the connection without a complete response"
    if isinstance(exc, aiohttp.ClientPayloadError):
        return 502, "upstream_reset", f"{where} broke off the response body (connection reset or truncated)"
    if isinstance(exc, aiohttp.ClientResponseError):
        detail = str(exc.message).strip().splitlines()[0][:200] if exc.message else "unparseable"
        return 502, "upstream_bad_response", f"{where} sent an invalid HTTP response ({detail})"
    if isinstance(exc, ConnectionError | aiohttp.ClientOSError):
        return 502, "upstream_reset", f"{where} reset the connection"
    return 502, "upstream_error", f"request to {where} failed ({type(exc).__name__})"
