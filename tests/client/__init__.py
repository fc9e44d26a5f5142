"""Tests of the Python client and its CLI verb (bifrost_async.client)."""
