"""The local webhook receiver under a burst: connections queue in the kernel until its accept
thread takes them, rather than wait out TCP's retransmit."""

from __future__ import annotations

import select
import socket
import time
from urllib.parse import urlsplit

from alertkit import SECRET
from fraudstream.alerts.consumer import AlertOptions
from fraudstream.alerts.receiver import LocalReceiver


def _connected_within(port: int, n: int, seconds: float) -> int:
    """How many of ``n`` simultaneous connects complete within ``seconds``."""
    socks = [socket.socket() for _ in range(n)]
    try:
        for s in socks:
            s.setblocking(False)
            s.connect_ex(("127.0.0.1", port))
        done: set[socket.socket] = set()
        deadline = time.monotonic() + seconds
        while len(done) < n and (left := deadline - time.monotonic()) > 0:
            _, writable, _ = select.select([], [s for s in socks if s not in done], [], left)
            done.update(s for s in writable if not s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR))
        return len(done)
    finally:
        for s in socks:
            s.close()


def test_a_burst_of_connections_waits_in_the_backlog_not_for_a_retransmit() -> None:
    """Not yet accepting (its thread not started), the receiver still completes the
    handshakes of four times the consumer's concurrent sends. With the stdlib's backlog of
    5, six completed and the rest were dropped, to be retried by TCP a second later."""
    receiver = LocalReceiver(SECRET)
    port = urlsplit(receiver.url).port
    assert port is not None
    burst = 4 * AlertOptions().concurrency
    try:
        assert _connected_within(port, burst, 0.5) == burst
    finally:
        receiver._server.server_close()
