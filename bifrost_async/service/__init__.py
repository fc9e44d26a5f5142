"""Submit and poll as the contract has them, independent of how a request arrived.

Lives here: the middleware's options (``config``), the request types and their paths
(``routes``), who is asking (``credentials``, ``forwarding``), the request knobs (``prefer``), body
validation and fingerprints (``validation``, ``fingerprint``, ``idempotency``), the refusals made
before a body is read (``admission``) and :class:`~bifrost_async.service.jobs_service.JobService`
itself (``jobs_service``).

May import: :mod:`bifrost_async.core`. Never the HTTP layer, the proxy, the built-in plugins or
the client.
"""
