"""Test helpers for bifrost-async and its plugins: the store kit.

:class:`StoreContract` is the store contract (:class:`~bifrost_async.store.JobStore`) as pytest
tests; every store runs it. Subclass it in a test module and provide a ``store_factory`` fixture
(and, if the store needs them, ``store_options``)::

    from bifrost_async.testing import StoreContract

    class TestMyStore(StoreContract):
        @pytest.fixture
        def store_factory(self):
            return my_store_factory

        @pytest.fixture
        def store_options(self, tmp_path):
            return {"path": str(tmp_path / "jobs.db")}  # strings, as flags and env give them

A store registered ``shared=True`` (one set of jobs for every process pointed at the same place)
subclasses :class:`SharedStoreContract` instead: the same tests, plus tests across two instances
of the store built from the same factory, options and clock, standing for two processes.

Each test's docstring states the rule it checks, and each assertion's message names that rule
(``rule: update is a compare-and-set: ...``), so a failure says what the store got wrong. Class
attributes tune the kit for a store (see :class:`StoreContract`). docs/STORES.md explains the rules
and the kit for store authors. The tests are marked for pytest-asyncio, so they run in its strict
and auto modes alike.

The kit is a package; import from it, not from its modules (their layout may change):
``clock`` (:class:`FakeClock`), ``jobs`` (:func:`make_job`, :func:`processing`, :func:`finished`),
``fixtures`` (what the rule groups stand on), ``records``, ``bounds`` and ``extensions`` (the rule
groups :class:`StoreContract` is made of), ``contract``, ``shared_contract``, ``webhooks``
(:class:`WebhookRecordsContract`), ``waiting`` (:func:`until`: wait for a condition other tasks
on the loop make true, one loop step at a time) and ``checks`` (internal helpers).
"""

from .clock import FakeClock
from .contract import StoreContract
from .jobs import finished, make_job, processing
from .shared_contract import SharedStoreContract
from .waiting import until
from .webhooks import WebhookRecordsContract

__all__ = [
    "FakeClock",
    "SharedStoreContract",
    "StoreContract",
    "WebhookRecordsContract",
    "finished",
    "make_job",
    "processing",
    "until",
]
