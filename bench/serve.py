"""Serve an ASGI app factory with uvicorn on a listening socket inherited from the parent.

``python bench/serve.py bench.apps:combined FD``. Not ``uvicorn --fd``: uvicorn takes an inherited
descriptor for a Unix socket, so a TCP socket would lose ``TCP_NODELAY`` and every small response
would wait ~40 ms for a delayed ACK.

``BENCH_LOOP`` and ``BENCH_HTTP`` pick uvicorn's event loop (``asyncio``, ``uvloop``) and HTTP
parser (``h11``, ``httptools``); both default to ``auto``, uvicorn's own default and what
``bifrost-async serve`` gets: uvloop and httptools when installed, asyncio and h11 otherwise.
``bench/uvloop_ab.py`` serves both ways side by side.
"""

from __future__ import annotations

import os
import socket
import sys
from pathlib import Path

import uvicorn

sys.path.append(str(Path(__file__).resolve().parent.parent))  # after PYTHONPATH


def main() -> None:
    factory, fd = sys.argv[1], int(sys.argv[2])
    sock = socket.socket(fileno=fd)  # family and type are read from the descriptor
    config = uvicorn.Config(
        factory,
        factory=True,
        log_level="warning",
        access_log=False,
        lifespan="on",
        loop=os.environ.get("BENCH_LOOP", "auto"),
        http=os.environ.get("BENCH_HTTP", "auto"),
    )
    uvicorn.Server(config).run(sockets=[sock])


if __name__ == "__main__":
    main()
