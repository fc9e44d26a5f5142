"""The job engine: what a job is and how it runs, with no HTTP in sight.

Lives here: the job record (``jobs``), the store protocol and its webhook-records capability
(``store``, ``webhook_records``), waiting for a job (``waiters``, ``watch``), the captured request
a job replays (``capture``) and the response and outcome it ends with (``response``, ``outcome``),
the provider protocol (``provider``), the plugin hooks and manager (``hookspecs``, ``hooks``), the
work queue that admits a job (``queue``), the runner that runs it (``runner``), the one function
that ends it (``finish``), riding out a store outage (``reachability``: whether the store answers
and when leases may be judged; ``outage``: the runner's retried writes, leases first), and small
leaf helpers (``errors``, ``jsonsafe``, ``numbers``,
``logfields``).

May import: the standard library and third-party packages only. Never
:mod:`bifrost_async.service`, :mod:`bifrost_async.http`, :mod:`bifrost_async.proxy`,
:mod:`bifrost_async.builtin` or :mod:`bifrost_async.client` (import-linter checks it).
"""
