"""Webhook signatures as a receiver checks them: good, tampered, stale; and the signed
request as a real HTTP receiver gets it."""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from datetime import UTC, datetime

import pytest

from alertkit import SECRET, webhook_receiver
from fraudstream.alerts.payload import sample_alert
from fraudstream.alerts.signing import (
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    sign,
    verify_signature,
)
from fraudstream.alerts.webhook import ALERT_ID_HEADER, WebhookChannel
from fraudstream.errors import AlertError, ConfigError

BODY = b'{"alert_id":"tx-1:webhook","score":912}'
NOW = 1_800_000_000


def test_a_good_signature_verifies() -> None:
    header = sign(SECRET, NOW, BODY)
    assert verify_signature(SECRET, str(NOW), BODY, header, 300, now=NOW + 299)
    assert verify_signature(SECRET, str(NOW), BODY, f"v0=abc, {header}", 300, now=NOW)


@pytest.mark.parametrize(
    ("secret", "timestamp", "body"),
    [
        ("another-secret", str(NOW), BODY),
        (SECRET, str(NOW + 1), BODY),  # the timestamp is signed too
        (SECRET, str(NOW), BODY.replace(b"912", b"12")),
        (SECRET, str(NOW), BODY + b" "),
    ],
)
def test_a_tampered_request_does_not_verify(secret: str, timestamp: str, body: bytes) -> None:
    header = sign(SECRET, NOW, BODY)
    assert not verify_signature(secret, timestamp, body, header, 300, now=NOW)


def test_a_stale_or_future_timestamp_does_not_verify() -> None:
    header = sign(SECRET, NOW, BODY)
    assert not verify_signature(SECRET, str(NOW), BODY, header, 300, now=NOW + 301)
    assert not verify_signature(SECRET, str(NOW), BODY, header, 300, now=NOW - 301)


@pytest.mark.parametrize("header", ["", "v1=", "v2=00", "sha256=00", "garbage"])
def test_a_malformed_header_does_not_verify(header: str) -> None:
    assert not verify_signature(SECRET, str(NOW), BODY, header, 300, now=NOW)
    assert not verify_signature(SECRET, "soon", BODY, sign(SECRET, NOW, BODY), 300, now=NOW)


def test_a_receiver_gets_the_alert_signed_as_documented() -> None:
    """The stdlib recipe of the package docstring checks what the channel really sends."""
    alert = sample_alert("webhook", datetime.now(UTC))
    with webhook_receiver() as receiver:
        WebhookChannel(receiver.url, SECRET).send(alert)
        [got] = receiver.wait_for(1)
    assert got.verified
    timestamp, signature = got.headers[TIMESTAMP_HEADER], got.headers[SIGNATURE_HEADER]
    expected = hmac.new(
        SECRET.encode(), timestamp.encode() + b"." + got.body, hashlib.sha256
    ).hexdigest()
    assert abs(time.time() - int(timestamp)) <= 300
    assert hmac.compare_digest(signature, "v1=" + expected)
    assert got.headers[ALERT_ID_HEADER] == alert.alert_id
    assert got.headers["Content-Type"] == "application/json"
    assert json.loads(got.body)["customer"]["name"] == "Test Customer"
    assert SECRET not in str(got.headers) and SECRET.encode() not in got.body


def test_a_webhook_refused_by_the_receiver_is_an_alert_error() -> None:
    with webhook_receiver(default=503) as receiver:
        channel = WebhookChannel(receiver.url, SECRET)
        with pytest.raises(AlertError, match=r"webhook: http://127\.0\.0\.1:\d+ answered HTTP 503"):
            channel.send(sample_alert("webhook", datetime.now(UTC)))


def test_a_redirect_is_not_followed_but_counts_as_a_failure() -> None:
    """Followed, a POST's 302 turns into a GET without the alert (or goes to another host)."""
    with webhook_receiver(default=302) as receiver:
        channel = WebhookChannel(receiver.url, SECRET)
        with pytest.raises(AlertError, match="answered HTTP 302"):
            channel.send(sample_alert("webhook", datetime.now(UTC)))
        assert len(receiver.received) == 1


@pytest.mark.parametrize(
    ("url", "secret", "message"),
    [
        (
            "file:///etc/passwd",
            SECRET,
            "alerts_webhook_url: must be an http(s) URL with a host (scheme 'file')",
        ),
        ("hooks.example.com/T0/B0/t0ken", SECRET, "http(s) URL with a host (no scheme)$"),
        ("http://", SECRET, "alerts_webhook_url: must be an http(s) URL"),
        ("http://example.com:99999/h", SECRET, "alerts_webhook_url: Port out of range"),
        ("http://example.com:8o/h", SECRET, "alerts_webhook_url: Port could not be cast"),
        ("https://example.com/h", "", "alerts_webhook_secret: required"),
    ],
)
def test_a_webhook_needs_an_http_url_and_a_secret(url: str, secret: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        WebhookChannel(url, secret)
