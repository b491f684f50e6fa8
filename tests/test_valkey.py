from __future__ import annotations

import os
import signal
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from fraudstream.config import Settings
from fraudstream.errors import ValkeyError
from fraudstream.valkey import EmbeddedValkey, connect, find_binary


@pytest.fixture
def server(tmp_path: Path) -> Iterator[EmbeddedValkey]:
    srv = EmbeddedValkey(tmp_path)
    try:
        yield srv
    finally:
        srv.stop()


def test_start_reuse_stop(server: EmbeddedValkey) -> None:
    info = server.ensure()
    again = server.ensure()
    assert again.pid == info.pid and again.port == info.port  # reused, not restarted
    client = redis.Redis(host=info.host, port=info.port, password=info.password)
    config = client.config_get("appendonly") | client.config_get("appendfsync")
    assert config == {"appendonly": "yes", "appendfsync": "everysec"}
    # rewritten past 1 GB, not 64 MB: each rewrite takes a core from the workers
    rewrite = client.config_get("auto-aof-rewrite-min-size")["auto-aof-rewrite-min-size"]
    assert rewrite == str(1 << 30)
    assert client.config_get("bind")["bind"] == "127.0.0.1"
    assert (server.dir / "password").stat().st_mode & 0o777 == 0o600
    assert server.stop() is True
    assert server.status() is None
    assert server.stop() is False


def test_password_is_required(server: EmbeddedValkey) -> None:
    info = server.ensure()
    with socket.create_connection((info.host, info.port)) as sock:
        sock.sendall(b"PING\r\n")
        assert sock.recv(100).startswith(b"-NOAUTH")


def test_data_survives_restart_on_the_same_port(server: EmbeddedValkey) -> None:
    info = server.ensure()
    redis.Redis(host=info.host, port=info.port, password=info.password).set("k", "v")
    server.stop()
    info2 = server.ensure()
    assert info2.port == info.port and info2.pid != info.pid
    client = redis.Redis(host=info2.host, port=info2.port, password=info2.password)
    assert client.get("k") == b"v"  # AOF replayed


def test_restart_after_kill_9_reports_the_new_server(server: EmbeddedValkey) -> None:
    """A killed server leaves its pid file behind: the start that follows must report the
    process that answers, not the dead one."""
    info = server.ensure()
    client = redis.Redis(host=info.host, port=info.port, password=info.password)
    client.set("k", "v")
    client.close()
    os.kill(info.pid, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while server.status() is not None:
        assert time.monotonic() < deadline, "the killed server still answers"
        time.sleep(0.05)
    again = server.ensure()
    fresh = redis.Redis(host=again.host, port=again.port, password=again.password)
    assert again.pid != info.pid
    assert again.pid == fresh.info("server")["process_id"]
    assert server.status() == again
    assert fresh.get("k") == b"v"  # in the AOF before the reply: a process kill loses none
    fresh.close()


def test_port_taken_is_one_clear_error(tmp_path: Path) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = sock.getsockname()[1]
        with pytest.raises(ValkeyError, match=f"127.0.0.1:{port} is already in use"):
            EmbeddedValkey(tmp_path, port=port).ensure()


def test_missing_binary_is_one_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ValkeyError, match="binary not found"):
        EmbeddedValkey(tmp_path, binary=tmp_path / "no-such-valkey-server").ensure()


def test_unwritable_data_dir_is_one_clear_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    with pytest.raises(ValkeyError, match="is not writable"):
        EmbeddedValkey(blocker).ensure()


def test_shipped_binary_is_found() -> None:
    assert find_binary().name == "valkey-server"


def test_external_url_starts_nothing(tmp_path: Path, valkey_url: str) -> None:
    settings = Settings(data_dir=str(tmp_path / "data"), valkey_url=valkey_url)
    client = connect(settings)
    assert client.ping()
    assert not (tmp_path / "data").exists()


def test_unreachable_external_url_is_one_clear_error(tmp_path: Path) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # bound, not listening: connection refused
        settings = Settings(valkey_url=f"redis://127.0.0.1:{port}/0")
        with pytest.raises(ValkeyError, match="cannot reach valkey"):
            connect(settings)


def test_connect_without_start_refuses_when_stopped(tmp_path: Path) -> None:
    with pytest.raises(ValkeyError, match="not running"):
        connect(Settings(data_dir=str(tmp_path)), start=False)
