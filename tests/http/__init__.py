"""Tests of the middleware and its answers (bifrost_async.http)."""
