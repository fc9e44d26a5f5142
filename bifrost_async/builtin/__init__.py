"""The built-in plugins: ordinary pluggy plugins, registered by name from
``bifrost_async.core.hooks.DEFAULT_PLUGINS`` (memory store, ``asgi`` and ``http`` providers, the
owner rule, the keys check) or added by the operator (``metrics``, ``webhooks``). ``upstream`` is
the aiohttp session of the ``http`` provider, which the proxy shares.

May import: :mod:`bifrost_async.service` and :mod:`bifrost_async.core`. Never the HTTP layer,
the proxy or the client.
"""
