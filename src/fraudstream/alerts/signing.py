"""Webhook signatures: HMAC-SHA256 over ``timestamp + "." + body``, sent as
``X-Fraudstream-Signature: v1=<hex>`` beside ``X-Fraudstream-Timestamp`` (Unix seconds).

The timestamp is inside the signed text, so a receiver that also bounds its age
(``tolerance_s``) refuses a captured request replayed later; ``v1=`` names the scheme, so a
second one can be introduced beside it.

>>> header = sign("s3cret", 1700000000, b'{"a":1}')
>>> verify_signature("s3cret", "1700000000", b'{"a":1}', header, now=1700000010)
True
>>> verify_signature("s3cret", "1700000000", b'{"a":2}', header, now=1700000010)
False
"""

from __future__ import annotations

import hashlib
import hmac
import time

TIMESTAMP_HEADER = "X-Fraudstream-Timestamp"
SIGNATURE_HEADER = "X-Fraudstream-Signature"
SCHEME = "v1"
DEFAULT_TOLERANCE_S = 300.0


def _digest(secret: str, timestamp: str, body: bytes) -> str:
    signed = timestamp.encode() + b"." + body
    return hmac.new(secret.encode(), signed, hashlib.sha256).hexdigest()


def sign(secret: str, timestamp: int, body: bytes) -> str:
    """The ``X-Fraudstream-Signature`` value of ``body`` sent at ``timestamp``."""
    return f"{SCHEME}={_digest(secret, str(timestamp), body)}"


def verify_signature(
    secret: str,
    timestamp: str,
    body: bytes,
    header: str,
    tolerance_s: float = DEFAULT_TOLERANCE_S,
    *,
    now: float | None = None,
) -> bool:
    """For receivers: True if ``header`` signs ``body`` at ``timestamp`` (the raw header
    values) with ``secret``, and the timestamp is within ``tolerance_s`` of ``now``.

    The comparison takes constant time. A header may list several comma-separated
    signatures (while a secret is rotated); one valid ``v1`` suffices.
    """
    try:
        sent = int(timestamp)
    except ValueError:
        return False
    current = time.time() if now is None else now
    if abs(current - sent) > tolerance_s:
        return False
    expected = _digest(secret, timestamp.strip(), body)
    for part in header.split(","):
        scheme, _, value = part.strip().partition("=")
        if scheme == SCHEME and hmac.compare_digest(value, expected):
            return True
    return False
