"""The outbox deliverer's own rules, against an in-memory outbox that records every call: what it
settles and how (done, or the next attempt's document with its due time), that a store outage
while settling is survived, a malformed entry is dropped, and an attempt cut off at shutdown is
handed back unchanged. (The Redis outbox and real processes: plugins/redis/tests.)"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence

from bifrost_async.builtin.webhooks.delivery import DeliveryPolicy, DeliveryReport, Dispatcher
from bifrost_async.builtin.webhooks.messages import Attempt, AttemptResult, Message
from bifrost_async.builtin.webhooks.outbox import OutboxDeliverer, decode, encode
from bifrost_async.core.store import StoreUnavailable
from bifrost_async.core.webhook_outbox import EntryFor, WebhookOutbox, webhook_outbox

MESSAGE = Message("ep", "billing", "msg_j", "async_job.completed", "j")


class FakeOutbox:
    """Hands out queued entries once, and records how each was settled."""

    outbox_claim_idle = 30.0

    def __init__(self, *documents: str) -> None:
        self.queue = [(f"{i}-0", document) for i, document in enumerate(documents)]
        self.done: list[str] = []
        self.retried: list[tuple[str, str, float]] = []
        self.settled = asyncio.Event()
        self.fail_settle = False

    def outbox_attach(self, entry_for: EntryFor) -> None:
        pass

    async def outbox_add(self, document: str) -> None:
        self.queue.append((f"{len(self.queue)}-0", document))

    async def outbox_read(self, consumer: str, count: int, block: float) -> list[tuple[str, str]]:
        taken, self.queue = self.queue[:count], self.queue[count:]
        if not taken:
            await asyncio.sleep(block)  # what a blocking read does when the stream is empty
        return taken

    async def outbox_done(self, consumer: str, entry_id: str) -> bool:
        self.settled.set()
        if self.fail_settle:
            raise StoreUnavailable("down")
        self.done.append(entry_id)
        return True

    async def outbox_retry(self, consumer: str, entry_id: str, document: str, due: float) -> bool:
        self.retried.append((entry_id, document, due))
        self.settled.set()
        return True

    async def outbox_touch(self, consumer: str, entry_ids: Sequence[str]) -> None:
        pass


def _dispatcher(prepare_answer: object, reports: list[DeliveryReport]) -> Dispatcher:
    async def prepare(message: Message) -> Attempt | str:
        if isinstance(prepare_answer, BaseException):
            raise prepare_answer
        if isinstance(prepare_answer, asyncio.Event):
            await prepare_answer.wait()  # an attempt that never ends
        return str(prepare_answer)

    async def record(message: Message, result: AttemptResult) -> None:
        pass

    return Dispatcher(DeliveryPolicy(), prepare=prepare, record=record, on_delivery=reports.append)


async def _run(outbox: FakeOutbox, dispatcher: Dispatcher) -> None:
    deliverer = OutboxDeliverer(outbox, dispatcher, poll_seconds=0.01)
    await deliverer.start()
    try:
        await asyncio.wait_for(outbox.settled.wait(), 10)
    finally:
        await deliverer.stop(0)


def test_the_fake_is_an_outbox() -> None:
    assert isinstance(FakeOutbox(), WebhookOutbox) and webhook_outbox(object()) is None


async def test_a_permanent_failure_is_settled_and_reported() -> None:
    outbox, reports = FakeOutbox(encode(MESSAGE, 3)), []
    await _run(outbox, _dispatcher("webhook endpoint deleted or disabled", reports))
    assert outbox.done == ["0-0"] and outbox.retried == []
    assert [(r.outcome, r.attempts, r.msg_id) for r in reports] == [("failed", 3, "msg_j")]


async def test_a_retryable_failure_schedules_the_next_attempt() -> None:
    outbox, reports = FakeOutbox(encode(MESSAGE, 2)), []
    before = time.time()
    await _run(outbox, _dispatcher(StoreUnavailable("store down"), reports))  # retryable
    [(entry_id, document, due)] = outbox.retried
    assert entry_id == "0-0" and decode(document) == (MESSAGE, 3)  # the count goes on
    assert due > before  # Bifrost's default back-off: due later, not now
    assert outbox.done == [] and reports == []  # not settled for good yet


async def test_a_store_outage_while_settling_is_survived() -> None:
    outbox, reports = FakeOutbox(encode(MESSAGE, 1)), []
    outbox.fail_settle = True
    await _run(outbox, _dispatcher("webhook endpoint deleted or disabled", reports))
    assert outbox.done == [] and reports == []  # left held: another process repeats it later


async def test_a_malformed_entry_is_dropped() -> None:
    outbox, reports = FakeOutbox('{"not": "an entry"}'), []
    await _run(outbox, _dispatcher("unused", reports))
    assert outbox.done == ["0-0"] and reports == []


async def test_an_attempt_cut_off_at_shutdown_is_handed_back_as_it_was() -> None:
    document = encode(MESSAGE, 4)
    outbox, reports, never = FakeOutbox(document), [], asyncio.Event()
    deliverer = OutboxDeliverer(outbox, _dispatcher(never, reports), poll_seconds=0.01)
    await deliverer.start()
    async with asyncio.timeout(10):
        while deliverer.pending == 0:  # noqa: ASYNC110 - until the reader has taken the entry
            await asyncio.sleep(0.005)
    await deliverer.stop(0)
    [(entry_id, handed, due)] = outbox.retried
    assert (entry_id, handed) == ("0-0", document) and due <= time.time()  # the same attempt, due now
    assert reports == []
