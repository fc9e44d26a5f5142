"""Tests of submit and poll rules (bifrost_async.service)."""
