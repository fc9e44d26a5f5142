"""The store contract every store keeps, as pytest tests: :class:`StoreContract`, made of the rule
groups in :mod:`.records`, :mod:`.bounds` and :mod:`.extensions` on the fixtures of
:mod:`.fixtures`. Its class attributes are the settings a store tunes."""

from __future__ import annotations

from .bounds import BoundRules
from .extensions import ExtensionRules
from .records import RecordRules


# The groups' tests are collected base first: records, then bounds, then extensions.
class StoreContract(ExtensionRules, BoundRules, RecordRules):
    """The rules every :class:`~bifrost_async.store.JobStore` keeps, as tests.

    Provide a ``store_factory`` fixture (the factory you register) and, if your store needs them,
    ``store_options`` (a mapping as ``StoreContext.options`` carries it; strings are what flags,
    the environment and TOML give). The ``clock`` fixture is a :class:`FakeClock` the store must
    judge expiry by. Settings, as class attributes:
    """

    #: Whether the store refuses (:class:`~bifrost_async.store.StoreFull`) a create beyond
    #: ``max_jobs`` live jobs. Set ``False`` only for a store with no bound at all; then the
    #: bound's tests are skipped.
    bounded: bool = True
    #: The bound (``StoreContext.max_jobs``) the ``store`` fixture is built with; at least 4.
    #: The bound tests fill it, so keep it small for a slow store.
    max_jobs: int = 20
    #: Seconds a :meth:`~bifrost_async.store.JobStore.wait` may take to return once the job it
    #: waits on ended or was deleted. The waits themselves are given 60 s, so only the store's
    #: notification (or a poll at least this often) ends them in time. Generous on purpose:
    #: the kit never asserts timing, only that the wake-up came.
    wake_deadline: float = 10.0
