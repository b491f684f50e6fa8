"""What one cluster node says about itself, and the URL that names the cluster.

A node's view comes from three commands: ``INFO server`` (its pid, so a stale pid file never
misleads), ``CLUSTER INFO`` (``cluster_state``) and ``CLUSTER NODES`` (its role, its primary,
its slots and which peers it is connected to).
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import quote, unquote, urlsplit

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from fraudstream.errors import ConfigError

URL_SCHEME = "redis+cluster"


@dataclass(frozen=True)
class NodeStatus:
    """One node as it answers (``pid`` None and ``state`` ``down`` when it does not)."""

    port: int
    pid: int | None
    node_id: str = ""
    role: str = "down"
    """``primary``, ``replica`` or ``down``."""
    primary_port: int | None = None
    state: str = "down"
    """The node's ``cluster_state``: ``ok``, ``fail``, or ``down`` when it does not answer."""
    slots: tuple[tuple[int, int], ...] = ()
    connected: int = 0
    """Peers this node holds a live cluster-bus link to."""
    peers: int = 0

    @property
    def slot_count(self) -> int:
        return sum(high - low + 1 for low, high in self.slots)

    @property
    def slot_text(self) -> str:
        return ",".join(f"{low}-{high}" for low, high in self.slots) or "-"

    def as_dict(self) -> dict[str, object]:
        return {
            "port": self.port,
            "pid": self.pid,
            "node_id": self.node_id,
            "role": self.role,
            "primary_port": self.primary_port,
            "state": self.state,
            "slots": self.slot_text,
            "slot_count": self.slot_count,
            "connected": self.connected,
            "peers": self.peers,
        }


def node_client(host: str, port: int, password: str, *, timeout_s: float = 5.0) -> redis.Redis:
    """A client on one node that never retries: a command to a stopping node (``SHUTDOWN``
    above all) must fail at once rather than reconnect."""
    return redis.Redis(
        host=host,
        port=port,
        password=password or None,
        socket_connect_timeout=2.0,
        socket_timeout=timeout_s,
        decode_responses=True,
        retry=Retry(NoBackoff(), 0),
    )


def probe(host: str, port: int, password: str) -> NodeStatus:
    """The node on ``port`` as it answers now."""
    client = node_client(host, port, password)
    try:
        pid = int(client.info("server")["process_id"])
        info: str = client.execute_command("CLUSTER", "INFO")  # type: ignore[no-untyped-call]
        nodes: str = client.execute_command("CLUSTER", "NODES")  # type: ignore[no-untyped-call]
    except (redis.RedisError, KeyError, ValueError):
        return NodeStatus(port=port, pid=None)
    finally:
        client.close()
    return _from_views(port, pid, _fields(info), nodes)


def _fields(info: str) -> dict[str, str]:
    pairs = (line.split(":", 1) for line in info.splitlines() if ":" in line)
    return {key: value.strip() for key, value in pairs}


def _from_views(port: int, pid: int, info: dict[str, str], nodes: str) -> NodeStatus:
    rows = [line.split() for line in nodes.splitlines() if line.strip()]
    ports = {row[0]: _port_of(row[1]) for row in rows}
    me = next(row for row in rows if "myself" in row[2].split(","))
    others = [row for row in rows if row is not me]
    replica = "slave" in me[2].split(",")
    return NodeStatus(
        port=port,
        pid=pid,
        node_id=me[0],
        role="replica" if replica else "primary",
        primary_port=ports.get(me[3]) if replica else None,
        state=info.get("cluster_state", "unknown"),
        slots=tuple(_slot_range(item) for item in me[8:] if not item.startswith("[")),
        connected=sum(1 for row in others if row[7] == "connected"),
        peers=len(others),
    )


def _port_of(address: str) -> int:
    """``127.0.0.1:7000@17000,hostname`` → 7000."""
    return int(address.split("@", 1)[0].rpartition(":")[2] or 0)


def _slot_range(item: str) -> tuple[int, int]:
    low, _, high = item.partition("-")
    return int(low), int(high or low)


def cluster_url(password: str, host: str, ports: list[int]) -> str:
    """``redis+cluster://:<password>@host:p1,host:p2,…``: every node is a startup node, the
    password carried as in the single server's ``redis://:<password>@host:port``.

    >>> cluster_url("s3cret", "127.0.0.1", [7000, 7001])
    'redis+cluster://:s3cret@127.0.0.1:7000,127.0.0.1:7001'
    """
    auth = f":{quote(password, safe='')}@" if password else ""
    return f"{URL_SCHEME}://{auth}" + ",".join(f"{host}:{port}" for port in ports)


def parse_cluster_url(url: str) -> tuple[str, list[tuple[str, int]]]:
    """The password and the startup nodes of a `cluster_url`.

    >>> parse_cluster_url("redis+cluster://:s3cret@127.0.0.1:7000,127.0.0.1:7001")
    ('s3cret', [('127.0.0.1', 7000), ('127.0.0.1', 7001)])

    Raises:
        ConfigError: not a ``redis+cluster://`` URL with at least one ``host:port``.
    """
    parts = urlsplit(url)
    if parts.scheme != URL_SCHEME:
        raise ConfigError("valkey_url", f"must start with {URL_SCHEME}://, got {parts.scheme!r}")
    auth, _, hosts = parts.netloc.rpartition("@")
    nodes = []
    for item in hosts.split(","):
        host, _, port = item.rpartition(":")
        if not host or not port.isdigit():
            raise ConfigError("valkey_url", f"{item!r} is not host:port")
        nodes.append((host, int(port)))
    return unquote(auth.partition(":")[2]), nodes
