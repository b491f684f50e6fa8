"""Security checks in one place: every keyed endpoint of the generated OpenAPI document
refuses a request without a key (401) and with a key lacking its scope (403), so a new
endpoint is covered as soon as it is declared; servers bind loopback by default; the
embedded Valkey wants its password; secrets never appear in `config show` or in the logs
of a serve run."""

from __future__ import annotations

import re
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import redis

from apikit import KEY, call, get, post, sample_tx, start_server, stop_server
from clikit import run_cli
from fraudstream.api.keys import SCOPES, KeyStore
from fraudstream.config import Settings
from fraudstream.valkey import EmbeddedValkey

pytestmark = pytest.mark.integration

PUBLIC = {"/healthz", "/readyz"}
"""Endpoints the document may list without a key: the probes."""
SECRETS = {
    "api_key": KEY,
    "database_url": "postgresql://fraud:db-secret-9c1f@127.0.0.1:1/fraud",
    "alerts_webhook_secret": "webhook-secret-5e2a7d",
    "challenge_secret": "challenge-secret-0b4c9e",
    "alerts_smtp_password": "smtp-secret-77aa31",
}
"""Each secret setting, with a value recognisable wherever it leaks."""


def _secret_env() -> dict[str, str]:
    return {f"FRAUDSTREAM_{name.upper()}": value for name, value in SECRETS.items()}


@pytest.fixture(scope="module")
def served(
    tmp_path_factory: pytest.TempPathFactory, valkey_url: str
) -> Iterator[tuple[subprocess.Popen[bytes], str]]:
    """A server run with every secret set, and its base URL."""
    redis.Redis.from_url(valkey_url).flushall()
    settings = {name: value for name, value in SECRETS.items() if name != "api_key"}
    proc, base = start_server(valkey_url, tmp_path_factory.mktemp("security"), KEY, **settings)
    try:
        yield proc, base
    finally:
        if proc.poll() is None:
            stop_server(proc)


def _listening(port: int) -> set[str]:
    """The local addresses (hex, as /proc/net/tcp writes them) listening on ``port``."""
    found = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            local, state = line.split()[1], line.split()[3]
            address, hex_port = local.rsplit(":", 1)
            if state == "0A" and int(hex_port, 16) == port:
                found.add(address)
    return found


def _operations(document: dict[str, Any]) -> Iterator[tuple[str, str, dict[str, Any]]]:
    for path, item in document["paths"].items():
        for method, op in item.items():
            if method in ("get", "post", "put", "patch", "delete"):
                yield method.upper(), re.sub(r"{\w+}", "x", path), op


def test_every_keyed_endpoint_refuses_no_key_and_a_key_without_its_scope(
    served: tuple[subprocess.Popen[bytes], str], client: redis.Redis
) -> None:
    base = served[1]
    status, document = get(base, "/openapi.json")
    assert status == 200
    operations = list(_operations(document))
    assert len(operations) > 10
    public = {path for _, path, op in operations if "security" not in op}
    assert public <= PUBLIC, f"endpoints without a key: {sorted(public - PUBLIC)}"
    lacking: dict[str, str] = {}
    for method, path, op in operations:
        if "security" not in op:
            continue
        scope = re.search(r"`(\w+)` scope", op["description"])
        assert scope is not None, f"{method} {path}: no scope in {op['description']!r}"
        if scope[1] not in lacking:
            other = next(s for s in SCOPES if s not in (scope[1], "admin"))
            lacking[scope[1]] = KeyStore(client).create(f"lacks-{scope[1]}", [other])
        body = b"{}" if method in ("POST", "PUT", "PATCH") else None
        refused = call(base, method, path, body, key=None)
        assert refused.status == 401, f"{method} {path} without a key: {refused.status}"
        refused = call(base, method, path, body, key=lacking[scope[1]])
        assert refused.status == 403, f"{method} {path} lacking {scope[1]}: {refused.status}"


def test_servers_bind_loopback_by_default(
    served: tuple[subprocess.Popen[bytes], str], tmp_path: Path
) -> None:
    defaults = Settings()
    assert defaults.api_host == "127.0.0.1" and defaults.valkey_host == "127.0.0.1"
    port = urlsplit(served[1]).port
    assert port is not None
    assert _listening(port) == {"0100007F"}  # 127.0.0.1, and nothing else
    server = EmbeddedValkey(tmp_path)
    info = server.ensure()
    try:
        assert _listening(info.port) == {"0100007F"}
        with pytest.raises(redis.AuthenticationError):  # NOAUTH: no password, no data
            redis.Redis(host=info.host, port=info.port).get("anything")
        with pytest.raises(redis.AuthenticationError):
            redis.Redis(host=info.host, port=info.port, password="guess").get("anything")
    finally:
        server.stop()


def test_config_show_masks_every_secret(tmp_path: Path, valkey_url: str) -> None:
    result = run_cli("config", "show", env={**_secret_env(), "FRAUDSTREAM_DATA_DIR": str(tmp_path)})
    assert result.returncode == 0, result.stderr
    shown = result.stdout + result.stderr
    for name, value in SECRETS.items():
        assert name in shown, f"{name} not shown at all"
        assert _secret_part(value) not in shown, f"{name} shown in clear"
    password = urlsplit(valkey_url).password
    result = run_cli(
        "config", "show", valkey_url=valkey_url, env={"FRAUDSTREAM_DATA_DIR": str(tmp_path)}
    )
    assert password and password not in result.stdout + result.stderr


def test_a_serve_run_logs_no_secret(
    served: tuple[subprocess.Popen[bytes], str], valkey_url: str
) -> None:
    """Requests that succeed and fail, then the whole log of the stopped server. The
    module's last test: it stops the server the others share."""
    proc, base = served
    assert post(base, "/v1/score", sample_tx(1))[0] == 200
    assert post(base, "/v1/score", sample_tx(2), key="fsk_wrong")[0] == 401
    assert post(base, "/v1/score", b"{nope")[0] == 422
    proc.terminate()
    _, err = proc.communicate(timeout=15)
    log = err.decode(errors="replace")
    assert log.startswith("serving on http://127.0.0.1:"), log
    leaked = [name for name, value in SECRETS.items() if _secret_part(value) in log]
    assert not leaked, f"secrets in the serve log: {leaked}"
    password = urlsplit(valkey_url).password
    assert password and password not in log


def _secret_part(value: str) -> str:
    """What must not show: a URL's password, or the whole value."""
    return (urlsplit(value).password or value) if "://" in value else value
