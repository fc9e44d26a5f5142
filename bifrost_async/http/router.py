"""The one router of every request the middleware answers itself.

:meth:`Router.match` looks at a request once and says which endpoint answers it, or ``None``
(not ours: the wrapped app gets it untouched). In order:

1. ``/api/webhooks[/...]`` when the webhooks plugin is on: its admin API;
2. a path under the async prefix: submit and list (``POST``/``GET {prefix}/<type>``), poll and
   cancel (``GET``/``DELETE .../{id}``), the raw result (``GET .../{id}/result``) and the
   OpenAPI document; ``HEAD`` wherever ``GET`` is; anything else there is a 404 or a 405;
3. Bifrost's header-driven async (``x-bf-async``) on a provider route;
4. ``POST`` on a synchronous route with ``Prefer: respond-async`` (RFC 7240).

One table of our own, not Starlette's router: a request on a passed-through path costs a
prefix test, one set lookup and (for ``POST``) one dict lookup, and an async path one dict
lookup per method; the table is built once per middleware. ``Prefer`` is parsed once per
request that needs it and carried in the :class:`Match`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Awaitable, Callable
from typing import Any

from bifrost_async.http.endpoints import JobEndpoints
from bifrost_async.http.header_async import HeaderAsync
from bifrost_async.service.prefer import preferences
from bifrost_async.service.routes import RouteSpec, RouteTable

#: Suffix of the raw-result route: ``{prefix}/<type path>/{id}/result``.
RESULT_SUFFIX = "/result"

Handler = Callable[[JobEndpoints, "Match", dict[str, Any], Any, Any], Awaitable[None]]


@dataclasses.dataclass(slots=True)
class Match:
    """Which endpoint answers a request, with what the router already found out."""

    #: ``JobEndpoints.<method>``, called with the middleware's one endpoints object.
    handler: Handler
    #: The path without the ASGI ``root_path``.
    path: str
    #: False for answers that need no store (404, 405, the OpenAPI document).
    needs_service: bool = True
    spec: RouteSpec | None = None
    job_id: str | None = None
    #: The request's ``Prefer`` preferences, when the router had to read them.
    prefer: dict[str, str] | None = None
    #: Route-specific detail: the ``Allow`` value of a 405, the header-async action, the
    #: webhooks plugin of the admin API.
    detail: Any = None


def _head(get: Handler) -> Handler:
    """``HEAD`` answers as ``GET`` does, with the status and headers (``Content-Length``
    included, as RFC 9110 allows) and no body bytes."""

    async def head(
        endpoints: JobEndpoints, match: Match, scope: dict[str, Any], receive: Any, send: Any
    ) -> None:
        async def head_send(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.body":
                message = {
                    "type": "http.response.body",
                    "body": b"",
                    "more_body": message.get("more_body", False),
                }
            await send(message)

        await get(endpoints, match, {**scope, "method": "GET"}, receive, head_send)

    return head


class Router:
    """Matches requests against the route table, the header-async routes and the synchronous
    paths; built once per middleware."""

    def __init__(self, routes: RouteTable, header_async: HeaderAsync, pm: Any) -> None:
        E = JobEndpoints  # the handlers are its methods
        self.routes = routes
        self.header_async = header_async
        self.pm = pm
        self.openapi_path = f"{routes.prefix}/openapi.json"
        self.sync_paths: dict[str, RouteSpec] = {}
        for spec in routes:
            self.sync_paths.setdefault(spec.sync_path, spec)  # the first request type wins
        #: method -> handler, per kind of async path
        self.collection: dict[str, Handler] = {
            "GET": E.list_jobs,
            "HEAD": _head(E.list_jobs),
            "POST": E.submit,
        }
        self.job: dict[str, Handler] = {"GET": E.poll, "HEAD": _head(E.poll), "DELETE": E.cancel_or_delete}
        self.result: dict[str, Handler] = {"GET": E.result, "HEAD": _head(E.result)}
        self._allow = {id(self.collection): "GET, HEAD, POST", id(self.job): "GET, HEAD, DELETE"}
        self._allow[id(self.result)] = "GET, HEAD"
        self._endpoints = E

    def match(self, path: str, scope: dict[str, Any]) -> Match | None:
        """The endpoint for this request, or ``None`` when the wrapped app answers it."""
        if path == "/api/webhooks" or path.startswith("/api/webhooks/"):
            from bifrost_async.http.webhook_admin import admin_plugin  # apps without webhooks never load it

            admin = admin_plugin(self.pm, path)
            if admin is not None:
                return Match(self._endpoints.webhook_admin, path, detail=admin)
        if self.routes.owns(path):
            return self._async_route(path, scope["method"])
        action = self.header_async.match(path, scope)
        if action is not None:
            return Match(self._endpoints.header_async, path, detail=action)
        if scope["method"] == "POST":
            spec = self.sync_paths.get(path)
            if spec is not None:
                prefer = preferences(scope["headers"])
                if "respond-async" in prefer:
                    return Match(self._endpoints.respond_async, path, spec=spec, prefer=prefer)
        return None

    def _async_route(self, path: str, method: str) -> Match:
        spec, job_id = self.routes.match(path)
        table = self.collection if job_id is None else self.job
        if spec is None:
            if path == self.openapi_path and method == "GET":
                return Match(self._endpoints.openapi, path, needs_service=False)
            spec, job_id = self._match_result(path)
            if spec is None:
                return Match(self._endpoints.unknown_route, path, needs_service=False)
            table = self.result
        handler = table.get(method)
        if handler is None:
            return Match(
                self._endpoints.not_allowed, path, needs_service=False, detail=self._allow[id(table)]
            )
        return Match(handler, path, spec=spec, job_id=job_id)

    def _match_result(self, path: str) -> tuple[RouteSpec | None, str | None]:
        """``(spec, job_id)`` for a raw-result path. Only consulted when the route table found
        nothing, so it never shadows a configured route."""
        if not path.endswith(RESULT_SUFFIX):
            return None, None
        spec, job_id = self.routes.match(path[: -len(RESULT_SUFFIX)])
        return (spec, job_id) if job_id is not None else (None, None)
