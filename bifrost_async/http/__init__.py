"""The HTTP layer: ``AsyncJobsMiddleware`` and every answer it gives itself.

Lives here: the middleware (``middleware``), the endpoints of the async routes and their
extensions (``endpoints``, ``extensions``), Bifrost's header-driven async (``header_async``), the
JSON/bytes response helpers (``respond``), the OpenAPI document (``openapi*``) and the webhook
admin API (``webhook_admin``).

May import: :mod:`bifrost_async.builtin`, :mod:`bifrost_async.service`, :mod:`bifrost_async.core`.
Never the proxy or the client.
"""
