"""API-key authentication as a plain ASGI middleware.

Every path except the public ones needs the key, in ``X-API-Key`` or ``Authorization:
Bearer``. Keys are compared in constant time.
"""

from __future__ import annotations

import hmac
import json
from pathlib import Path

from starlette.types import ASGIApp, Receive, Scope, Send

from fraudstream.keyfile import read_or_create

PUBLIC_PATHS = frozenset({"/healthz"})


class ApiKeyMiddleware:
    """Refuses requests without the right key with 401 and a JSON error."""

    def __init__(self, app: ASGIApp, api_key: str) -> None:
        if not api_key:
            raise ValueError("api_key: must not be empty")
        self.app = app
        self.key = api_key.encode()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in PUBLIC_PATHS or self._allowed(scope):
            await self.app(scope, receive, send)
            return
        body = json.dumps(
            {
                "error": {
                    "field": "api_key",
                    "message": "missing or wrong API key (X-API-Key or Authorization: Bearer)",
                }
            }
        ).encode()
        await send(
            {
                "type": "http.response.start",
                "status": 401,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"www-authenticate", b"Bearer"),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})

    def _allowed(self, scope: Scope) -> bool:
        for name, value in scope["headers"]:
            if name == b"x-api-key":
                return hmac.compare_digest(value, self.key)
            if name == b"authorization" and value[:7].lower() == b"bearer ":
                return hmac.compare_digest(value[7:], self.key)
        return False


def ensure_api_key(configured: str, data_dir: Path) -> tuple[str, Path | None]:
    """The configured key, or one generated once and kept (0600) in ``data_dir/api.key``.

    Returns the key and the file it lives in (None when it came from the settings).
    """
    if configured:
        return configured, None
    path = data_dir / "api.key"
    return read_or_create(path), path
