"""The webhook channel: the alert as JSON, POSTed and signed (`fraudstream.alerts.signing`).

stdlib ``urllib`` (no HTTP client is a dependency); the consumer sends a batch's alerts
from a thread pool, so one slow receiver does not serialise the others.
"""

from __future__ import annotations

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


class WebhookChannel:
    name = "webhook"

    def __init__(self, url: str, secret: str, *, timeout_s: float = 5.0) -> None:
        """Raises:
        ConfigError: the URL is not http(s), or there is no secret to sign with."""
        if urlsplit(url).scheme not in ("http", "https") or not urlsplit(url).hostname:
            raise ConfigError("alerts_webhook_url", f"must be an http(s) URL, got {url!r}")
        if not secret:
            raise ConfigError("alerts_webhook_secret", "required with alerts_webhook_url")
        self.url = url
        self._secret = secret
        self.timeout_s = timeout_s

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
        request = urllib.request.Request(
            self.url,
            data=body,
            method="POST",
            headers={
                "Content-Type": "application/json",
                "User-Agent": "fraudstream-alerts",
                TIMESTAMP_HEADER: str(stamp),
                SIGNATURE_HEADER: sign(self._secret, stamp, body),
                ALERT_ID_HEADER: alert.alert_id,
            },
        )
        try:
            with _opener.open(request, timeout=self.timeout_s) as response:
                response.read()
        except urllib.error.HTTPError as exc:
            exc.close()  # it holds the connection
            raise AlertError(f"webhook: {self.describe()} answered HTTP {exc.code}") from None
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise AlertError(f"webhook: {self.describe()} unreachable: {reason}") from None
