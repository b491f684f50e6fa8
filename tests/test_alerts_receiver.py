"""The local webhook receiver under a burst: connections queue in the kernel until its accept
thread takes them, rather than wait out TCP's retransmit."""

from __future__ import annotations

import json
import select
import socket
import time
from datetime import UTC, datetime
from urllib.parse import urlsplit

import msgspec
import pytest

from alertkit import SECRET, tls_cert, webhook_receiver
from fraudstream.alerts.consumer import AlertOptions
from fraudstream.alerts.payload import Alert, sample_alert
from fraudstream.alerts.receiver import LocalReceiver
from fraudstream.alerts.webhook import WebhookChannel
from fraudstream.errors import AlertError


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


def _alert(i: int) -> Alert:
    return msgspec.structs.replace(sample_alert("webhook", datetime.now(UTC)), alert_id=f"a-{i}")


def test_alerts_to_one_receiver_go_on_one_kept_alive_connection() -> None:
    with webhook_receiver(keep_alive=True) as receiver:
        channel = WebhookChannel(receiver.url, SECRET, timeout_s=2.0)
        for i in range(20):
            channel.send(_alert(i))
        channel.close()
    assert len(receiver.ports) == 20 and all(r.verified for r in receiver.received)
    assert len(set(receiver.ports)) == 1


def test_a_connection_the_receiver_dropped_meanwhile_is_replaced_at_once() -> None:
    """The receiver closes each connection after its answer without saying so: every send
    after the first finds its kept connection gone, and goes again on a new one."""
    with webhook_receiver(keep_alive=True, drop_after_answer=True) as receiver:
        channel = WebhookChannel(receiver.url, SECRET, timeout_s=2.0)
        for i in range(5):
            channel.send(_alert(i))
        channel.close()
    assert [json.loads(r.body)["alert_id"] for r in receiver.received] == [
        f"a-{i}" for i in range(5)
    ]
    assert len(set(receiver.ports)) == 5


def test_the_local_receiver_keeps_connections_alive() -> None:
    with LocalReceiver(SECRET) as receiver:
        channel = WebhookChannel(receiver.url, SECRET, timeout_s=2.0)
        for i in range(3):
            channel.send(_alert(i))
        assert len(channel._idle) == 1
        kept = channel._idle[0].sock
        channel.send(_alert(3))
        assert channel._idle[0].sock is kept
        channel.close()
    assert [r.verified for r in receiver.received()] == [True] * 4


def test_alerts_over_https_keep_one_verified_connection(monkeypatch: pytest.MonkeyPatch) -> None:
    """The receiver's certificate is checked (trusted here through ``SSL_CERT_FILE``, as a
    private CA), and the TLS handshake is paid once for all the alerts."""
    with webhook_receiver(keep_alive=True, tls=True) as receiver:
        untrusting = WebhookChannel(receiver.url, SECRET, timeout_s=2.0)
        with pytest.raises(AlertError, match="unreachable: .*CERTIFICATE_VERIFY_FAILED"):
            untrusting.send(_alert(0))
        untrusting.close()
        monkeypatch.setenv("SSL_CERT_FILE", str(tls_cert()[0]))
        channel = WebhookChannel(receiver.url, SECRET, timeout_s=2.0)
        for i in range(1, 6):
            channel.send(_alert(i))
        channel.close()
    assert [json.loads(r.body)["alert_id"] for r in receiver.received] == [
        f"a-{i}" for i in range(1, 6)
    ]
    assert len(set(receiver.ports)) == 1 and all(r.verified for r in receiver.received)
