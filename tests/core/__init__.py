"""Tests of the job engine (bifrost_async.core)."""
