"""The webhooks plugin (Bifrost's ``x-bf-async-webhook``): endpoint configuration, signed delivery
with Bifrost's retry rule, the SSRF guard, payloads, and the OpenAPI paths of its admin API.

``from bifrost_async.builtin.webhooks import WebhooksPlugin, WebhookEndpoint, verify`` is the
user-facing import; the admin HTTP API that manages endpoints is
:mod:`bifrost_async.http.webhook_admin`.
"""

from bifrost_async.builtin.webhooks.plugin import (
    SECRET_PREFIX as SECRET_PREFIX,
)
from bifrost_async.builtin.webhooks.plugin import (
    WebhookEndpoint as WebhookEndpoint,
)
from bifrost_async.builtin.webhooks.plugin import (
    WebhooksPlugin as WebhooksPlugin,
)
from bifrost_async.builtin.webhooks.plugin import (
    decode_secret as decode_secret,
)
from bifrost_async.builtin.webhooks.plugin import (
    load_endpoints as load_endpoints,
)
from bifrost_async.builtin.webhooks.plugin import (
    verify as verify,
)
