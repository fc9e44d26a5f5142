"""``python -m bifrost_async serve --upstream URL``: the same as the ``bifrost-async`` command."""

from bifrost_async.cli import main

raise SystemExit(main())
