"""The reverse proxy (``bifrost-async serve``): the proxy app in front of a synchronous gateway,
its WebSocket relay, its health answer and the ``serve`` settings and log setup.

May import: :mod:`bifrost_async.http` (the middleware it wraps), :mod:`bifrost_async.builtin`
(the upstream session shared with the HTTP provider), :mod:`bifrost_async.service` and
:mod:`bifrost_async.core`. Nothing below imports this package.
"""

from bifrost_async.proxy.app import build_proxy as build_proxy
