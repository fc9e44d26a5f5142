"""Kept for imports written before the store kit became a package: the webhook records contract
now lives in :mod:`bifrost_async.testing.webhooks`; import it from :mod:`bifrost_async.testing`."""

from .testing.webhooks import WebhookRecordsContract

__all__ = ["WebhookRecordsContract"]
