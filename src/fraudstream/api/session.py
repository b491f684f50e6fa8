"""Browser sessions: log in once with an API key, then read pages with a cookie.

A browser cannot send ``X-API-Key`` when it loads a page, so ``POST /login`` (a form with
the key) opens a session: a random token in an ``HttpOnly``, ``SameSite=Strict`` cookie, and
in Valkey only its SHA-256 with the key's name, scopes and digest, for ``SESSION_TTL_S``.
A session authenticates safe methods (GET, HEAD). Anything that changes state needs the key
in a header, or the session's cookie *and* its CSRF token in ``X-CSRF-Token``
(`csrf_token`: derived from the cookie's token, which scripts cannot read, and given only in
the pages this server sends that session), so a forged cross-site form or ``fetch`` can
change nothing: it can neither read the token nor, under ``SameSite=Strict``, send the
cookie. A session ends at logout, at expiry, or when its key is revoked.
"""

from __future__ import annotations

import hmac
import html
import secrets
from typing import Any
from urllib.parse import parse_qs

import msgspec
import redis
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.types import Scope

from fraudstream.api.keys import ApiKey, KeyStore, digest

COOKIE = "fs_session"
SESSION_TTL_S = 8 * 3600
SAFE_METHODS = frozenset({"GET", "HEAD"})
CSRF_HEADER = b"x-csrf-token"


class StoredSession(msgspec.Struct, frozen=True):
    name: str
    scopes: list[str]
    key_digest: str


class SessionStore:
    def __init__(self, client: redis.Redis, keys: KeyStore, bootstrap_digest: str) -> None:
        self.client = client
        self.keys = keys
        self.bootstrap_digest = bootstrap_digest
        self.prefix = keys.keys.rsplit(":", 1)[0] + ":session:"

    def open(self, key: ApiKey, key_digest: str) -> str:
        token = secrets.token_urlsafe(32)
        record = StoredSession(key.name, sorted(key.scopes), key_digest)
        self.client.set(self.prefix + digest(token), msgspec.json.encode(record), ex=SESSION_TTL_S)
        return token

    def lookup(self, token: bytes) -> ApiKey | None:
        raw: Any = self.client.get(self.prefix + digest(token))
        if raw is None:
            return None
        stored = msgspec.json.decode(raw, type=StoredSession)
        if stored.key_digest != self.bootstrap_digest and not self.client.hexists(
            self.keys.keys, stored.key_digest
        ):
            return None  # the key was revoked
        return ApiKey(stored.name, frozenset(stored.scopes))

    def close(self, token: str) -> None:
        self.client.delete(self.prefix + digest(token))


def cookie_token(scope: Scope) -> bytes | None:
    for name, value in scope["headers"]:
        if name == b"cookie":
            for part in value.split(b";"):
                key, _, token = part.strip().partition(b"=")
                if key == COOKIE.encode() and token:
                    return bytes(token)
    return None


def csrf_token(token: bytes) -> str:
    """The session's CSRF token: a hash of the cookie's token under its own label (not the
    digest that names the session in Valkey).

    >>> csrf_token(b"t") == csrf_token(b"t") != csrf_token(b"u") != digest(b"u")
    True
    """
    return digest(b"csrf:" + token)


def csrf_checked_token(scope: Scope) -> bytes | None:
    """The cookie's token if the request also carries that session's CSRF token."""
    token = cookie_token(scope)
    presented = next((v for k, v in scope["headers"] if k == CSRF_HEADER), None)
    if token is None or presented is None:
        return None
    return token if hmac.compare_digest(presented, csrf_token(token).encode()) else None


def login_form(error: str = "", next_path: str = "/docs", status: int = 200) -> Response:
    message = f'<p class="error">{html.escape(error)}</p>' if error else ""
    page = _LOGIN.format(error=message, next=html.escape(next_path, quote=True))
    return HTMLResponse(page, status_code=status, headers=_NO_STORE)


async def form_fields(request: Request) -> dict[str, str]:
    """An ``application/x-www-form-urlencoded`` body (the login form), without extra
    dependencies."""
    body = (await request.body()).decode("utf-8", "replace")
    return {k: v[0] for k, v in parse_qs(body, max_num_fields=10).items()}


def safe_next(path: str) -> str:
    """Only a path of this site: never an open redirect.

    >>> safe_next("/docs"), safe_next("//evil.example"), safe_next("https://x"), safe_next("")
    ('/docs', '/docs', '/docs', '/docs')
    """
    ok = path.startswith("/") and not path.startswith("//") and "\\" not in path
    return path if ok else "/docs"


def signed_in(token: str, next_path: str, secure: bool) -> Response:
    response = RedirectResponse(safe_next(next_path), status_code=303)
    response.set_cookie(
        COOKIE,
        token,
        max_age=SESSION_TTL_S,
        httponly=True,
        samesite="strict",
        secure=secure,
        path="/",
    )
    return response


def signed_out() -> Response:
    response = RedirectResponse("/login", status_code=303)
    response.delete_cookie(COOKIE, path="/")
    return response


_NO_STORE = {"cache-control": "no-store"}
_LOGIN = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>fraudstream — sign in</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<link rel="icon" href="data:,">
<style>
body {{ font-family: system-ui, sans-serif; max-width: 26rem; margin: 4rem auto; }}
input {{ width: 100%; padding: .5rem; margin: .5rem 0; box-sizing: border-box; }}
button {{ padding: .5rem 1rem; }} .error {{ color: #b00020; }}
</style></head>
<body><h1>fraudstream</h1>{error}
<form method="post" action="/login">
<label for="api_key">API key</label>
<input id="api_key" name="api_key" type="password" autocomplete="off" required autofocus>
<input type="hidden" name="next" value="{next}">
<button type="submit">Sign in</button>
</form>
<p>The key is in <code>.fraudstream/api.key</code> on the server, or ask for one
(<code>fraudstream keys create</code>).</p>
</body></html>
"""
