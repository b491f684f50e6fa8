"""Run ``fraudstream serve`` as a user does (a subprocess on a free port) and call it."""

from __future__ import annotations

import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from email.message import Message
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import redis

KEY = "test-key-123"
START_TIMEOUT_S = 90
"""Generous: the scorer compiles its kernels at start, slow on a loaded host."""


def feature_state(client: redis.Redis) -> dict[bytes, bytes]:
    """Every feature key and its serialized value: what a replay must leave unchanged."""
    state: dict[bytes, bytes] = {}
    for key in client.scan_iter(match="fs:*", count=1000):
        dumped: Any = client.dump(key)
        state[key] = dumped
    return state


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_server(
    valkey_url: str,
    data_dir: Path,
    key: str | None,
    *,
    args: Sequence[str] = (),
    **settings: str,
) -> tuple[subprocess.Popen[bytes], str]:
    """The server process and its base URL, once ``/healthz`` answers. ``args`` go to
    ``serve``; ``settings`` become ``FRAUDSTREAM_*`` variables."""
    port = free_port()
    env = {
        **os.environ,
        "FRAUDSTREAM_VALKEY_URL": valkey_url,
        "FRAUDSTREAM_DATA_DIR": str(data_dir),
        **{f"FRAUDSTREAM_{name.upper()}": value for name, value in settings.items()},
    }
    env.pop("FRAUDSTREAM_API_KEY", None)
    if key:
        env["FRAUDSTREAM_API_KEY"] = key
    proc = subprocess.Popen(
        [sys.executable, "-m", "fraudstream", "serve", "--port", str(port), *args],
        env=env,
        stderr=subprocess.PIPE,
        start_new_session=True,  # its own group: a failed start kills every process it began
    )
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        try:
            urllib.request.urlopen(base + "/healthz", timeout=1)
            return proc, base
        except OSError:
            assert proc.poll() is None, proc.stderr.read().decode() if proc.stderr else ""
            time.sleep(0.1)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.communicate()
    raise AssertionError("server did not start")


def stop_server(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    proc.communicate(timeout=15)


@contextmanager
def serving(valkey_url: str, data_dir: Path) -> Iterator[str]:
    """A server with the bootstrap key `KEY` on a keyspace cleared of what earlier modules
    left (models, rules); its base URL."""
    redis.Redis.from_url(valkey_url).flushall()
    proc, base = start_server(valkey_url, data_dir, KEY)
    try:
        yield base
    finally:
        stop_server(proc)


class Reply:
    """Status, headers (names case-insensitive) and body (JSON when it is JSON)."""

    def __init__(self, status: int, headers: Message, raw: bytes) -> None:
        self.status = status
        self.headers = headers
        self.raw = raw
        try:
            self.body: Any = json.loads(raw)
        except ValueError:
            self.body = None


def call(
    base: str,
    method: str,
    path: str,
    body: Any = None,
    key: str | None = KEY,
    headers: dict[str, str] | None = None,
) -> Reply:
    data = body if isinstance(body, bytes) or body is None else json.dumps(body).encode()
    request = urllib.request.Request(base + path, data=data, method=method)
    if key:
        request.add_header("X-API-Key", key)
    for name, value in (headers or {}).items():
        request.add_header(name, value)
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return Reply(response.status, response.headers, response.read())
    except urllib.error.HTTPError as exc:
        return Reply(exc.code, exc.headers, exc.read())


def post(base: str, path: str, body: Any, key: str | None = KEY) -> tuple[int, Any]:
    reply = call(base, "POST", path, body, key)
    return reply.status, reply.body


def get(base: str, path: str, key: str | None = KEY) -> tuple[int, Any]:
    reply = call(base, "GET", path, None, key)
    return reply.status, reply.body


def sample_tx(i: int, **changes: Any) -> dict[str, Any]:
    tx = {
        "transaction_id": f"api-{i}",
        "timestamp": datetime.now(UTC).isoformat(),
        "customer_id": f"c{i % 7}",
        "terminal_id": "t1",
        "merchant_id": "m1",
        "amount": 20.0 + i,
        "currency": "EUR",
        "channel": "ecommerce",
        "ip": "10.0.0.1",
    }
    tx.update(changes)
    return tx


def post_form(
    base: str, path: str, body: str, cookie: str = ""
) -> tuple[http.client.HTTPResponse, bytes]:
    """A form posted as a browser does, redirects not followed."""
    url = urlsplit(base)
    conn = http.client.HTTPConnection(url.hostname or "", url.port, timeout=30)
    headers = {"Content-Type": "application/x-www-form-urlencoded"}
    if cookie:
        headers["Cookie"] = cookie
    conn.request("POST", path, body=body.encode(), headers=headers)
    response = conn.getresponse()
    text = response.read()
    conn.close()
    return response, text
