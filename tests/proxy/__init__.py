"""Tests of the proxy and the serve command (bifrost_async.proxy, bifrost_async.cli)."""
