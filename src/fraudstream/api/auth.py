"""Authentication (who is calling) as a plain ASGI middleware; authorisation (may they) per
route, with `require`.

Every path except the public ones needs a key, in ``X-API-Key`` or ``Authorization: Bearer``
(or a browser session's cookie, with its CSRF token for anything but GET and HEAD, see
`session`): the bootstrap key or a scoped key of the `KeyStore`. A browser loading a page
without either is sent to the login form, which brings it back. A request costs no Valkey
round trip in the steady state.
"""

from __future__ import annotations

import hmac
import time
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlencode

from anyio import to_thread
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.types import ASGIApp, Receive, Scope, Send

from fraudstream.api.bodies import send_error
from fraudstream.api.keys import BOOTSTRAP, ApiKey, KeyStore, digest
from fraudstream.api.session import (
    SAFE_METHODS,
    SessionStore,
    cookie_token,
    csrf_checked_token,
)
from fraudstream.keyfile import read_or_create

PUBLIC_PATHS = frozenset({"/healthz", "/readyz", "/login", "/logout"})
CACHE_S = 5.0
_CACHE_MAX = 10_000


class Authenticator:
    """Who a presented secret is: the bootstrap key (constant-time compare, every scope), a
    scoped key of the store, or — for safe methods — a browser session's cookie. Lookups run
    in a thread and are cached for ``cache_s`` seconds (a revoked key or closed session
    stops working within that time)."""

    def __init__(
        self,
        api_key: str,
        store: KeyStore | None = None,
        sessions: SessionStore | None = None,
        cache_s: float = CACHE_S,
    ) -> None:
        if not api_key:
            raise ValueError("api_key: must not be empty")
        self.key = api_key.encode()
        self.store = store
        self.sessions = sessions
        self.cache_s = cache_s
        self._cache: dict[tuple[str, str], tuple[ApiKey | None, float]] = {}

    async def key_of(self, secret: bytes | None) -> ApiKey | None:
        if not secret:
            return None
        if hmac.compare_digest(secret, self.key):
            return BOOTSTRAP
        if self.store is None:
            return None
        return await self._cached("key", secret, self.store.lookup)

    async def session_of(self, token: bytes | None) -> ApiKey | None:
        if not token or self.sessions is None:
            return None
        return await self._cached("session", token, self.sessions.lookup)

    async def _cached(
        self, kind: str, secret: bytes, lookup: Callable[[bytes], ApiKey | None]
    ) -> ApiKey | None:
        entry, now = (kind, digest(secret)), time.monotonic()
        cached = self._cache.get(entry)
        if cached is not None and cached[1] > now:
            return cached[0]
        found = await to_thread.run_sync(lookup, secret)
        if len(self._cache) >= _CACHE_MAX:
            self._cache.clear()
        self._cache[entry] = (found, now + self.cache_s)
        return found

    def forget(self, kind: str, secret: bytes) -> None:
        self._cache.pop((kind, digest(secret)), None)


class ApiKeyMiddleware:
    """Refuses requests without a known key or session with 401 (a browser's page load: a
    redirect to ``/login``); puts the caller's `ApiKey` in ``scope["state"]["api_key"]`` for
    the routes to check scopes."""

    def __init__(self, app: ASGIApp, auth: Authenticator) -> None:
        self.app = app
        self.auth = auth

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in PUBLIC_PATHS:
            await self.app(scope, receive, send)
            return
        secret, problem = _presented(scope)
        if problem is not None:
            await send_error(send, 401, "api_key", problem, [(b"www-authenticate", b"Bearer")])
            return
        caller = await self.auth.key_of(secret)
        if caller is None:
            safe = scope["method"] in SAFE_METHODS
            token = cookie_token(scope) if safe else csrf_checked_token(scope)
            caller = await self.auth.session_of(token)
        if caller is None:
            await (_to_login(scope, send) if _wants_page(scope) else _refuse(send))
            return
        scope.setdefault("state", {})["api_key"] = caller
        await self.app(scope, receive, send)


def require(request: Request, scope: str) -> Response | None:
    """None if the caller's key holds ``scope``, else the 403 to answer."""
    caller: ApiKey | None = getattr(request.state, "api_key", None)
    if caller is not None and caller.allows(scope):
        return None
    name = caller.name if caller else "anonymous"
    message = f"the key {name!r} lacks the {scope!r} scope"
    return JSONResponse({"error": {"field": "api_key", "message": message}}, status_code=403)


def _presented(scope: Scope) -> tuple[bytes | None, str | None]:
    """The key the request presents, or why its credentials are refused outright: an
    ``Authorization`` that is not ``Bearer <key>``, or two headers naming different keys (a
    request must not be read one way by us and another by a proxy in front)."""
    keys: set[bytes] = set()
    for name, value in scope["headers"]:
        if name == b"x-api-key":
            keys.add(bytes(value))
        elif name == b"authorization":
            if value[:7].lower() != b"bearer ":
                return None, "Authorization: only 'Bearer <key>' is accepted"
            keys.add(bytes(value[7:]))
    if len(keys) > 1:
        return None, "the request names more than one key (X-API-Key, Authorization)"
    return (keys.pop() if keys else None), None


def _wants_page(scope: Scope) -> bool:
    """A browser navigating (GET, HTML accepted), not a script or an API client."""
    accept = next((v for k, v in scope["headers"] if k == b"accept"), b"")
    return scope["method"] == "GET" and b"text/html" in accept


async def _to_login(scope: Scope, send: Send) -> None:
    query = urlencode({"next": scope["path"]}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": 303,
            "headers": [(b"location", b"/login?" + query), (b"content-length", b"0")],
        }
    )
    await send({"type": "http.response.body", "body": b""})


async def _refuse(send: Send) -> None:
    message = "missing or wrong API key (X-API-Key or Authorization: Bearer)"
    await send_error(send, 401, "api_key", message, [(b"www-authenticate", b"Bearer")])


def ensure_api_key(configured: str, data_dir: Path) -> tuple[str, Path | None]:
    """The configured key, or one generated once and kept (0600) in ``data_dir/api.key``.

    Returns the key and the file it lives in (None when it came from the settings).
    """
    if configured:
        return configured, None
    path = data_dir / "api.key"
    return read_or_create(path), path
