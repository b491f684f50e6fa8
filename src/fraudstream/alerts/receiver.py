"""A local webhook receiver: what `fraudstream demo` points its alerts at, and what a team can
start to see alerts arrive before wiring their own endpoint.

Every POST is checked with `verify_signature` and recorded with the time it arrived; it is
answered 204 when the signature holds, 401 when not (a real receiver must refuse unsigned
alerts). Loopback only.
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any

from fraudstream.alerts.signing import verify_signature

MAX_BODY = 1 << 20


@dataclass(frozen=True)
class Received:
    at: float
    """Epoch seconds of arrival."""
    body: dict[str, Any]
    verified: bool


BACKLOG = 128
"""Connections the kernel queues before the server accepts them. The stdlib's default, 5, is
below the alerts consumer's 8 concurrent sends: on a busy host (the demo: workers, sink and
consumer on 2 cores) the accept thread fell behind, the kernel dropped the extra SYNs, and
each of those alerts arrived after TCP's 1-s retransmit (the demo's p95, decision →
receiver, ~1,070 ms against a p50 of ~10)."""


IDLE_S = 60.0
"""A kept connection with no request for this long is closed (the sender opens another)."""


class _Server(ThreadingHTTPServer):
    request_queue_size = BACKLOG


class LocalReceiver:
    """``with LocalReceiver(secret) as r: … r.url …``: an HTTP server on 127.0.0.1 (a free
    port) in a thread, collecting what it receives."""

    def __init__(self, secret: str, *, tolerance_s: float = 300.0) -> None:
        self.secret = secret
        self.tolerance_s = tolerance_s
        self._lock = threading.Lock()
        self._received: list[Received] = []
        self._server = _Server(("127.0.0.1", 0), self._handler())
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}/alerts"

    def received(self) -> list[Received]:
        with self._lock:
            return list(self._received)

    def __enter__(self) -> LocalReceiver:
        self._thread.start()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._server.shutdown()
        self._server.server_close()

    def _record(self, body: bytes, timestamp: str, signature: str) -> bool:
        ok = verify_signature(self.secret, timestamp, body, signature, self.tolerance_s)
        try:
            parsed = json.loads(body)
        except ValueError:
            parsed = {}
        with self._lock:
            self._received.append(Received(time.time(), parsed, ok))
        return ok

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # connections kept for the next alert
            timeout = IDLE_S

            def do_POST(self) -> None:  # noqa: N802 (the stdlib's name)
                length = int(self.headers.get("Content-Length") or 0)
                if length > MAX_BODY:  # its body unread: the connection cannot go on
                    self.send_response(413)
                    self.send_header("Content-Length", "0")
                    self.send_header("Connection", "close")
                    self.end_headers()
                    self.close_connection = True
                    return
                body = self.rfile.read(length)
                ok = receiver._record(
                    body,
                    self.headers.get("X-Fraudstream-Timestamp", ""),
                    self.headers.get("X-Fraudstream-Signature", ""),
                )
                if ok:
                    self.send_response(204)  # no body, and no Content-Length (RFC 9110)
                else:
                    self.send_response(401)
                    self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
                return  # quiet: the demo prints its own summary

        return Handler
