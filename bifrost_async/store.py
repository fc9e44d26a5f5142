"""Public module for plugin authors.

The job store protocol and everything a store plugin needs, from one module.

The code lives in :mod:`bifrost_async.core.store`; this module re-exports its public names, so
``from bifrost_async.store import ...`` keeps working wherever the code moves.
"""

from bifrost_async.core.store import (
    WORKER_LOST_MESSAGE as WORKER_LOST_MESSAGE,
)
from bifrost_async.core.store import (
    JobStore as JobStore,
)
from bifrost_async.core.store import (
    OwnerShareFull as OwnerShareFull,
)
from bifrost_async.core.store import (
    RegisterStore as RegisterStore,
)
from bifrost_async.core.store import (
    StoreContext as StoreContext,
)
from bifrost_async.core.store import (
    StoreError as StoreError,
)
from bifrost_async.core.store import (
    StoreFactory as StoreFactory,
)
from bifrost_async.core.store import (
    StoreFull as StoreFull,
)
from bifrost_async.core.store import (
    StoreHost as StoreHost,
)
from bifrost_async.core.store import (
    StoreReachability as StoreReachability,
)
from bifrost_async.core.store import (
    StoreUnavailable as StoreUnavailable,
)
from bifrost_async.core.store import (
    Waiters as Waiters,
)
from bifrost_async.core.store import (
    decode_cursor as decode_cursor,
)
from bifrost_async.core.store import (
    encode_cursor as encode_cursor,
)
from bifrost_async.core.store import (
    encode_position as encode_position,
)
from bifrost_async.core.store import (
    fail_orphan as fail_orphan,
)
from bifrost_async.core.store import (
    list_key as list_key,
)
from bifrost_async.core.store import (
    may_move as may_move,
)
from bifrost_async.core.store import (
    page_of as page_of,
)
from bifrost_async.core.store import (
    parse_store_options as parse_store_options,
)
from bifrost_async.core.store import (
    wait_for_job as wait_for_job,
)
from bifrost_async.core.store import (
    worker_lost as worker_lost,
)
from bifrost_async.core.webhook_outbox import (
    EntryFor as EntryFor,
)
from bifrost_async.core.webhook_outbox import (
    WebhookOutbox as WebhookOutbox,
)
from bifrost_async.core.webhook_outbox import (
    webhook_outbox as webhook_outbox,
)
from bifrost_async.core.webhook_records import (
    HISTORY_PER_ENDPOINT as HISTORY_PER_ENDPOINT,
)
from bifrost_async.core.webhook_records import (
    MemoryWebhookRecords as MemoryWebhookRecords,
)
from bifrost_async.core.webhook_records import (
    Replaced as Replaced,
)
from bifrost_async.core.webhook_records import (
    WebhookRecords as WebhookRecords,
)
from bifrost_async.core.webhook_records import (
    webhook_records as webhook_records,
)
