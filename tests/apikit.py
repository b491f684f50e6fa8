"""Run ``fraudstream serve`` as a user does (a uvicorn subprocess) and talk to it."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Mapping
from pathlib import Path
from typing import Any


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_server(
    valkey_url: str, data_dir: Path, key: str | None, env: Mapping[str, str] | None = None
) -> tuple[subprocess.Popen[bytes], str]:
    """A server on a free port, once ``/healthz`` answers: the process and its base URL.
    ``key`` is the API key (None: the server generates one); ``env`` adds to the environment."""
    port = free_port()
    full = {
        **os.environ,
        "FRAUDSTREAM_VALKEY_URL": valkey_url,
        "FRAUDSTREAM_DATA_DIR": str(data_dir),
        **(env or {}),
    }
    full.pop("FRAUDSTREAM_API_KEY", None)
    if key:
        full["FRAUDSTREAM_API_KEY"] = key
    proc = subprocess.Popen(
        [sys.executable, "-m", "fraudstream", "serve", "--port", str(port)],
        env=full,
        stderr=subprocess.PIPE,
    )
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            urllib.request.urlopen(base + "/healthz", timeout=1)
            return proc, base
        except OSError:
            assert proc.poll() is None, proc.stderr.read().decode() if proc.stderr else ""
            time.sleep(0.1)
    proc.kill()
    raise AssertionError("server did not start")


def call(
    base: str, method: str, path: str, body: Any = None, key: str | None = None
) -> tuple[int, Any]:
    """One request (JSON or raw bytes ``body``, ``key`` in ``X-API-Key``): status and JSON."""
    data = body if isinstance(body, bytes) or body is None else json.dumps(body).encode()
    request = urllib.request.Request(base + path, data=data, method=method)
    if key:
        request.add_header("X-API-Key", key)
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())
