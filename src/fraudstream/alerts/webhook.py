"""The webhook channel: the alert as JSON, POSTed and signed (`fraudstream.alerts.signing`).

stdlib ``http.client`` (no HTTP client is a dependency) over kept-alive connections: a new
connection per alert pays a TCP handshake, and against an ``https`` receiver a TLS one,
every time. The consumer sends a batch's alerts from a thread pool, so one slow receiver
does not serialise the others; each send borrows an idle connection or opens one, and gives
it back after the answer. Through a proxy (``https_proxy`` …, as ``urllib`` reads them) each
alert goes by ``urllib`` on a connection of its own.
"""

from __future__ import annotations

import http.client
import threading
import time
import urllib.error
import urllib.request
from typing import Any
from urllib.parse import urlsplit

import msgspec

from fraudstream.alerts.payload import Alert, DriftAlert
from fraudstream.alerts.signing import SIGNATURE_HEADER, TIMESTAMP_HEADER, sign
from fraudstream.errors import AlertError, ConfigError

ALERT_ID_HEADER = "X-Fraudstream-Alert-Id"
_encoder = msgspec.json.Encoder()


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    """A redirect is an answer like any non-2xx: urllib would follow a POST's 302 with a GET
    that drops the body (a "delivered" alert nobody got), or send the signed alert to
    another host."""

    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


_opener = urllib.request.build_opener(_NoRedirects)


STALE = (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError)
"""How a kept-alive connection the receiver closed while it idled fails on its next use."""


class WebhookChannel:
    name = "webhook"

    def __init__(self, url: str, secret: str, *, timeout_s: float = 5.0) -> None:
        """Raises:
        ConfigError: the URL is not http(s), or there is no secret to sign with."""
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            got = f"scheme {parts.scheme!r}" if parts.scheme else "no scheme"
            # the URL is not repeated: its path or query may hold a token
            raise ConfigError("alerts_webhook_url", f"must be an http(s) URL with a host ({got})")
        try:
            parts.port  # noqa: B018 (read to check it)
        except ValueError as exc:
            raise ConfigError("alerts_webhook_url", str(exc)) from None
        if not secret:
            raise ConfigError("alerts_webhook_secret", "required with alerts_webhook_url")
        self.url = url
        self._secret = secret
        self.timeout_s = timeout_s
        self._target = parts.path + (f"?{parts.query}" if parts.query else "") or "/"
        self._proxied = parts.scheme in urllib.request.getproxies() and not (
            urllib.request.proxy_bypass(parts.hostname)
        )
        self._idle: list[http.client.HTTPConnection] = []
        self._lock = threading.Lock()

    def describe(self) -> str:
        parts = urlsplit(self.url)
        return f"{parts.scheme}://{parts.hostname}{f':{parts.port}' if parts.port else ''}"

    def send(self, alert: Alert | DriftAlert) -> None:
        """One POST; a 2xx answer is delivered.

        Raises:
            AlertError: the receiver answered otherwise, or could not be reached.
        """
        body = _encoder.encode(alert)
        stamp = int(time.time())
        headers = {
            "Content-Type": "application/json",
            "User-Agent": "fraudstream-alerts",
            TIMESTAMP_HEADER: str(stamp),
            SIGNATURE_HEADER: sign(self._secret, stamp, body),
            ALERT_ID_HEADER: alert.alert_id,
        }
        status = self._by_urllib(body, headers) if self._proxied else self._post(body, headers)
        if not 200 <= status < 300:
            raise AlertError(f"webhook: {self.describe()} answered HTTP {status}")

    def close(self) -> None:
        """Close the idle connections (the next send opens one again)."""
        with self._lock:
            idle, self._idle = self._idle, []
        for conn in idle:
            conn.close()

    def _post(self, body: bytes, headers: dict[str, str]) -> int:
        """The answer's status, on an idle connection if there is one. One that fails the
        way a connection the receiver closed meanwhile fails is replaced once, at once (the
        retry policy's pauses are for receivers that are down)."""
        with self._lock:
            conn = self._idle.pop() if self._idle else None
        try:
            if conn is not None:
                try:
                    return self._exchange(conn, body, headers)
                except STALE:
                    conn.close()
            conn = self._connection()
            return self._exchange(conn, body, headers)
        except (http.client.HTTPException, OSError) as exc:
            if conn is not None:
                conn.close()
            raise AlertError(f"webhook: {self.describe()} unreachable: {exc}") from None

    def _exchange(self, conn: http.client.HTTPConnection, body: bytes, headers: Any) -> int:
        """POST, read the whole answer, give the connection back for the next send."""
        conn.request("POST", self._target, body=body, headers=headers)
        response = conn.getresponse()
        response.read()
        with self._lock:
            self._idle.append(conn)
        return response.status

    def _connection(self) -> http.client.HTTPConnection:
        parts = urlsplit(self.url)
        host, port = parts.hostname or "", parts.port
        if parts.scheme == "https":
            return http.client.HTTPSConnection(host, port, timeout=self.timeout_s)
        return http.client.HTTPConnection(host, port, timeout=self.timeout_s)

    def _by_urllib(self, body: bytes, headers: dict[str, str]) -> int:
        """Through the environment's proxy, as ``urllib`` goes: the answer's status."""
        request = urllib.request.Request(self.url, data=body, method="POST", headers=headers)
        try:
            with _opener.open(request, timeout=self.timeout_s) as response:
                response.read()
                return int(response.status)
        except urllib.error.HTTPError as exc:
            exc.close()  # it holds the connection
            return int(exc.code)
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise AlertError(f"webhook: {self.describe()} unreachable: {reason}") from None
