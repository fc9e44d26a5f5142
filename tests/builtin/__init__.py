"""Tests of the built-in plugins (bifrost_async.builtin)."""
