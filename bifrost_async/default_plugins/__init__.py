"""The built-in plugins: ordinary plugins, listed in ``bifrost_async.plugins.DEFAULT_PLUGINS``."""
