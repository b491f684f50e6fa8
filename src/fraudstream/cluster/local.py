"""The lifecycle of a local cluster living in ``data_dir/cluster/``.

Each node is started as the single embedded server is (loopback, the password required, AOF,
daemonized; `fraudstream.valkey.server_config`) plus cluster mode, a bus port of its own (the
default, port + 10000, may be taken or beyond 65535) and ``masterauth`` so that replicas can
sync. One password serves every node: 0600 in ``data_dir/cluster/password``. ``cluster.json``
keeps the shape and the ports, so `up` after `down` restarts the same nodes on their data and
their ``nodes.conf`` (which remembers slots, roles and peers) instead of forming a new cluster.
"""

from __future__ import annotations

import contextlib
import shutil
import socket
import time
from pathlib import Path

import redis

from fraudstream.cluster.forming import Layout, NodeSpec, form, formed, until
from fraudstream.cluster.nodes import NodeStatus, cluster_url, node_client, probe
from fraudstream.config import mask_url
from fraudstream.errors import ValkeyError
from fraudstream.keyfile import read_or_create
from fraudstream.valkey import (
    START_TIMEOUT_S,
    alive,
    find_binary,
    launch,
    port_free,
    server_config,
    terminate,
    wait_ready,
)

MIN_PRIMARIES = 3


class LocalCluster:
    """The cluster of one data dir."""

    def __init__(
        self,
        data_dir: Path,
        *,
        host: str = "127.0.0.1",
        appendfsync: str = "everysec",
        binary: Path | None = None,
        node_timeout_ms: int = 15_000,
    ) -> None:
        self.dir = data_dir / "cluster"
        self.host = host
        self.appendfsync = appendfsync
        self.binary = binary
        self.node_timeout_ms = node_timeout_ms
        """How long a primary may not answer before its replica takes over (Valkey's
        ``cluster-node-timeout``, 15 s by default); the failover tests use less."""

    @property
    def _layout_file(self) -> Path:
        return self.dir / "cluster.json"

    def layout(self) -> Layout | None:
        """The cluster this data dir holds, or None."""
        try:
            return Layout.from_json(self._layout_file.read_text())
        except FileNotFoundError:
            return None
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise ValkeyError(f"{self._layout_file}: unreadable ({exc})") from None

    def password(self) -> str:
        return read_or_create(self.dir / "password", 24)

    def url(self, *, show_password: bool = False) -> str:
        """The URL naming every node; the password masked unless ``show_password``."""
        layout = self.layout()
        ports = [n.port for n in layout.nodes] if layout else []
        url = cluster_url(self.password(), self.host, ports)
        return url if show_password else mask_url(url)

    def status(self) -> list[NodeStatus] | None:
        """Every node as it answers now, or None when this data dir holds no cluster."""
        layout = self.layout()
        if layout is None:
            return None
        password = self.password()
        return [self._status(node, password) for node in layout.nodes]

    def _status(self, node: NodeSpec, password: str) -> NodeStatus:
        status = probe(self.host, node.port, password)
        if status.pid is None:
            return NodeStatus(port=node.port, pid=_silent_node(self.dir / str(node.port)))
        return status

    def up(self, primaries: int | None = None, replicas: int | None = None) -> list[NodeStatus]:
        """Start the cluster (formed anew, or restarted from its data) and wait until every
        node says ``cluster_state:ok``.

        Args:
            primaries, replicas: the shape; None = the one this data dir holds, or 3 × 0.

        Raises:
            ValkeyError: binary missing, cluster already running, another shape in this data
                dir, a port taken, or no ``ok`` in time.
        """
        binary = self.binary or find_binary()
        if not binary.is_file():
            raise ValkeyError(f"cannot start the cluster: binary not found at {binary}")
        layout = self.layout()
        if layout is None:
            shape = (MIN_PRIMARIES if primaries is None else primaries, replicas or 0)
            layout = self._create(binary, *shape)
        else:
            self._check_shape(layout, primaries, replicas)
            self._restart(binary, layout)
        password = self.password()
        until(lambda: formed(self.host, layout, password), "cluster_state:ok on every node")
        return [self._status(node, password) for node in layout.nodes]

    def down(self, *, purge: bool = False, timeout_s: float = START_TIMEOUT_S) -> int:
        """Stop every node: ``SHUTDOWN`` (AOF flushed), then SIGTERM, then SIGKILL for a
        node still alive after ``timeout_s``. Keeps the data unless ``purge``.

        Returns:
            How many nodes were running.
        """
        layout = self.layout()
        stopped = 0
        if layout is not None:
            password = self.password()
            # Replicas first: a primary's SHUTDOWN waits for replicas that lag behind it.
            for node in reversed(layout.nodes):
                stopped += self._stop(node, password, timeout_s)
        if purge:
            shutil.rmtree(self.dir, ignore_errors=True)
        return stopped

    def _stop(self, node: NodeSpec, password: str, timeout_s: float) -> bool:
        pid = self._status(node, password).pid
        if pid is None:
            return False
        client = node_client(self.host, node.port, password, timeout_s=timeout_s)
        with contextlib.suppress(redis.RedisError):
            client.shutdown()
        client.close()
        deadline = time.monotonic() + timeout_s
        while alive(pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        terminate(pid, timeout_s)
        return True

    def _check_shape(self, layout: Layout, primaries: int | None, replicas: int | None) -> None:
        asked = (primaries or layout.primaries, layout.replicas if replicas is None else replicas)
        if asked != (layout.primaries, layout.replicas):
            raise ValkeyError(
                f"cannot start the cluster: {self.dir} holds {_shape(layout)}, not "
                f"{asked[0]} primaries with {asked[1]} replicas each "
                "(`fraudstream cluster down --purge` removes it)"
            )

    def _restart(self, binary: Path, layout: Layout) -> None:
        """Start the nodes that do not answer; refused when every node does."""
        password = self.password()
        stopped = [n for n in layout.nodes if probe(self.host, n.port, password).pid is None]
        if not stopped:
            raise ValkeyError(
                f"a cluster is already running from {self.dir} ({len(layout.nodes)} nodes; "
                "`fraudstream cluster status`)"
            )
        for node in stopped:
            if not port_free(self.host, node.port) or not port_free(self.host, node.bus):
                raise ValkeyError(
                    f"cannot start the cluster node on {self.host}:{node.port}: its port or "
                    f"its bus port {node.bus} is in use by another process"
                )
        self._start_nodes(binary, tuple(stopped))

    def _create(self, binary: Path, primaries: int, replicas: int) -> Layout:
        if primaries < MIN_PRIMARIES:
            raise ValkeyError(f"nodes: must be >= {MIN_PRIMARIES}, got {primaries}")
        if replicas < 0:
            raise ValkeyError(f"replicas: must be >= 0, got {replicas}")
        count = primaries * (1 + replicas)
        ports = _free_ports(self.host, 2 * count)
        nodes = tuple(NodeSpec(ports[2 * i], ports[2 * i + 1]) for i in range(count))
        layout = Layout(primaries, replicas, nodes)
        self.dir.mkdir(parents=True, exist_ok=True)
        self._layout_file.write_text(layout.to_json())  # first: a failed start is stopped by it
        try:
            self._start_nodes(binary, layout.nodes)
            form(self.host, layout, self.password())
        except (ValkeyError, redis.RedisError) as exc:
            self.down(purge=True)  # a cluster never formed has nothing worth keeping
            raise ValkeyError(f"cannot form the cluster: {exc}") from None
        return layout

    def _start_nodes(self, binary: Path, nodes: tuple[NodeSpec, ...]) -> None:
        """Launch every node, then wait for each: they start side by side."""
        password = self.password()
        for node in nodes:
            folder = self.dir / str(node.port)
            folder.mkdir(exist_ok=True)
            launch(binary, folder / "valkey.conf", self._config(folder, node, password))
        for node in nodes:
            wait_ready(self.host, node.port, password, self.dir / str(node.port) / "valkey.log")

    def _config(self, folder: Path, node: NodeSpec, password: str) -> list[str]:
        return [
            *server_config(
                folder,
                host=self.host,
                port=node.port,
                password=password,
                appendfsync=self.appendfsync,
            ),
            "cluster-enabled yes",
            f'cluster-config-file "{(folder / "nodes.conf").resolve()}"',
            f"cluster-port {node.bus}",
            f'masterauth "{password}"',
            f"cluster-node-timeout {self.node_timeout_ms}",
        ]


def _shape(layout: Layout) -> str:
    return f"{layout.primaries} primaries with {layout.replicas} replicas each"


def _free_ports(host: str, count: int) -> list[int]:
    """``count`` distinct free ports: every socket is held until all are picked."""
    with contextlib.ExitStack() as stack:
        socks = [stack.enter_context(socket.socket()) for _ in range(count)]
        for sock in socks:
            sock.bind((host, 0))
        return [int(sock.getsockname()[1]) for sock in socks]


def _silent_node(folder: Path) -> int | None:
    """The pid of a node alive but not answering (loading its AOF, hung), or None.

    Its pid file is trusted only while that process still works in the node's folder: after
    a crash the pid may belong to any other process, which must never be signalled.
    """
    try:
        pid = int((folder / "valkey.pid").read_text().strip())
        same = Path(f"/proc/{pid}/cwd").resolve(strict=True) == folder.resolve()
    except (OSError, ValueError):
        return None
    return pid if same and alive(pid) else None
