"""Serve an ASGI app factory with uvicorn on a listening socket inherited from the parent.

``python bench/serve.py bench.apps:combined FD``. Not ``uvicorn --fd``: uvicorn takes an inherited
descriptor for a Unix socket, so a TCP socket would lose ``TCP_NODELAY`` and every small response
would wait ~40 ms for a delayed ACK.
"""

from __future__ import annotations

import socket
import sys
from pathlib import Path

import uvicorn

sys.path.append(str(Path(__file__).resolve().parent.parent))  # after PYTHONPATH


def main() -> None:
    factory, fd = sys.argv[1], int(sys.argv[2])
    sock = socket.socket(fileno=fd)  # family and type are read from the descriptor
    config = uvicorn.Config(factory, factory=True, log_level="warning", access_log=False, lifespan="on")
    uvicorn.Server(config).run(sockets=[sock])


if __name__ == "__main__":
    main()
