"""`fraudstream serve --workers N`: N API processes answering on one port.

uvicorn's multiprocess supervisor, with `app_from_environment` as the app factory: the parent
binds the socket once and starts N children (``multiprocessing`` spawn) that accept on that
inherited socket, each building its own app: its own Valkey pool, scorer and micro-batcher.
Chosen over ``SO_REUSEPORT`` because the supervisor comes with the server we already run: it
pings its children and replaces one that dies or hangs, forwards SIGTERM/SIGINT to all of them
and waits for each to finish its requests in hand, and stops, instead of restarting, when a
child fails before serving (a model that does not load would fail every restart the same way).
On Linux a child also stops when the parent dies without warning (``kill -9``): no server is
left holding the port with nobody supervising it.

The children read the settings the parent read, the same way (environment, then the config
file; an explicit ``--config`` travels as ``FRAUDSTREAM_CONFIG``), and the API key from the
same place: the setting or the key file the parent created.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import socket
import sys
from typing import TYPE_CHECKING, Any

from starlette.applications import Starlette

if TYPE_CHECKING:
    from uvicorn import Config

GRACE_S = 3
"""At a stop, how long requests in hand may take to finish. An open console's event stream
never finishes: without a limit it would hold the server up until the browser left."""

FACTORY = "fraudstream.api.serving:app_from_environment"


def uvicorn_options() -> dict[str, Any]:
    """How every server process runs: httptools' C parser and uvloop's event loop, not
    uvicorn's pure-Python fallbacks (h11, asyncio's loop), which it takes silently when
    they are missing. Measured side by side (`benchmarks/bench_api.py`): ~1,150–1,320 →
    ~1,465–1,615 req/s from one process, p99 at 500 req/s ~14.5–16.6 → ~11.9–13.7 ms.
    uvloop has no Windows build: there, asyncio's loop."""
    return {
        "http": "httptools",
        "loop": "asyncio" if sys.platform == "win32" else "uvloop",
        "log_level": "warning",
        "timeout_graceful_shutdown": GRACE_S,
    }


def app_from_environment() -> Starlette:
    """The app of one server process, from the settings its environment gives.

    Raises:
        FraudstreamError: the settings are invalid or the active model does not load here.
    """
    from fraudstream.api.app import create_app
    from fraudstream.api.auth import ensure_api_key
    from fraudstream.config import load_settings
    from fraudstream.gcpolicy import freeze_startup
    from fraudstream.valkey import connect

    _stop_with_parent()
    settings = load_settings()
    key, _ = ensure_api_key(settings.api_key, settings.data_path)
    app = create_app(settings, connect(settings, timeout_s=settings.api_valkey_timeout_s), key)
    freeze_startup()  # what the app loaded: its pauses would be the requests' latency
    return app


def serve_processes(host: str, port: int, workers: int) -> int:
    """Serve with ``workers`` processes until SIGTERM/SIGINT; the exit code: 1 when a child
    failed at start-up (its error is logged), else 0."""
    import uvicorn
    from uvicorn.config import STARTUP_FAILURE
    from uvicorn.supervisors import Multiprocess

    config = uvicorn.Config(
        FACTORY,
        factory=True,
        host=host,
        port=port,
        workers=workers,
        **uvicorn_options(),
    )
    supervisor = Multiprocess(config, sockets=[listening_socket(config)])
    supervisor.run()
    return int(any(p.exitcode == STARTUP_FAILURE for p in supervisor.processes))


def listening_socket(config: Config) -> socket.socket:
    """The socket uvicorn binds for its children, with its protocol said (IPPROTO_TCP).

    uvicorn creates it as ``socket(family)``, protocol 0, and asyncio sets ``TCP_NODELAY``
    only on connections accepted from a socket whose protocol is IPPROTO_TCP: without it,
    Nagle's algorithm holds each response's second write until the client's delayed ACK, and
    a child answered ~3.7 times fewer requests than ``serve`` in one process (286 against
    1,070 req/s on 16 connections here).
    """
    sock = config.bind_socket()
    return socket.socket(sock.family, sock.type, socket.IPPROTO_TCP, fileno=sock.detach())


PR_SET_PDEATHSIG = 1
"""prctl(2): the signal this process gets when its parent dies."""


def _stop_with_parent() -> None:
    """In a server child on Linux: SIGTERM (a graceful stop) when the supervisor dies."""
    parent = multiprocessing.parent_process()
    if sys.platform != "linux" or parent is None:
        return
    import ctypes

    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    if os.getppid() != parent.pid:  # it died before the call: nobody would signal us
        os.kill(os.getpid(), signal.SIGTERM)
