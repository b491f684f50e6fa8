"""What a cluster is made of, and how started nodes become one.

`form` gives the slots to the primaries (split evenly), has every node meet the first, and
attaches each replica to its primary once every handshake is done (``CLUSTER REPLICATE`` needs
the primary known); `formed` says when every node agrees the cluster is ``ok``.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass

import redis

from fraudstream.cluster.nodes import node_client, probe
from fraudstream.errors import ValkeyError

SLOTS = 16384
FORM_TIMEOUT_S = 30.0


@dataclass(frozen=True)
class NodeSpec:
    """A node's client port and its cluster-bus port (chosen free, not port + 10000)."""

    port: int
    bus: int


@dataclass(frozen=True)
class Layout:
    """The cluster as created: ``nodes[:primaries]`` were its primaries, the rest replicas
    (replica ``i`` of primary ``i % primaries``); failovers may have swapped roles since."""

    primaries: int
    replicas: int
    nodes: tuple[NodeSpec, ...]

    def to_json(self) -> str:
        nodes = [{"port": n.port, "bus": n.bus} for n in self.nodes]
        return json.dumps({"primaries": self.primaries, "replicas": self.replicas, "nodes": nodes})

    @classmethod
    def from_json(cls, text: str) -> Layout:
        raw = json.loads(text)
        nodes = tuple(NodeSpec(int(n["port"]), int(n["bus"])) for n in raw["nodes"])
        return cls(int(raw["primaries"]), int(raw["replicas"]), nodes)


def slot_ranges(primaries: int) -> list[tuple[int, int]]:
    """The 16384 slots split evenly, the first ``SLOTS % primaries`` ranges one slot longer.

    >>> slot_ranges(3)
    [(0, 5461), (5462, 10922), (10923, 16383)]
    """
    size, extra = divmod(SLOTS, primaries)
    out, low = [], 0
    for i in range(primaries):
        high = low + size + (1 if i < extra else 0) - 1
        out.append((low, high))
        low = high + 1
    return out


def form(host: str, layout: Layout, password: str) -> None:
    """Slots to the primaries, every node met, each replica attached to its primary."""
    clients = [node_client(host, n.port, password) for n in layout.nodes]
    try:
        primaries = clients[: layout.primaries]
        for client, (low, high) in zip(primaries, slot_ranges(layout.primaries), strict=True):
            client.execute_command("CLUSTER", "ADDSLOTSRANGE", low, high)  # type: ignore[no-untyped-call]
        for node in layout.nodes[1:]:
            clients[0].execute_command("CLUSTER", "MEET", host, node.port, node.bus)  # type: ignore[no-untyped-call]
        until(lambda: all(_knows_all(c, len(clients)) for c in clients), "the nodes to meet")
        ids = [c.execute_command("CLUSTER", "MYID") for c in primaries]  # type: ignore[no-untyped-call]
        for i, replica in enumerate(clients[layout.primaries :]):
            replica.execute_command("CLUSTER", "REPLICATE", ids[i % layout.primaries])  # type: ignore[no-untyped-call]
    finally:
        for client in clients:
            client.close()


def _knows_all(client: redis.Redis, count: int) -> bool:
    """The node has finished the handshake with every other node."""
    text: str = client.execute_command("CLUSTER", "NODES")  # type: ignore[no-untyped-call]
    rows = [line.split() for line in text.splitlines() if line.strip()]
    return len(rows) == count and not any("handshake" in row[2] for row in rows)


def formed(host: str, layout: Layout, password: str) -> bool:
    """Every node answers ``cluster_state:ok`` and sees every peer connected, and every
    replica has its primary."""
    statuses = [probe(host, n.port, password) for n in layout.nodes]
    return (
        all(
            s.state == "ok"
            and s.connected == len(layout.nodes) - 1
            and (s.role == "primary" or s.primary_port is not None)
            for s in statuses
        )
        and sum(s.role == "replica" for s in statuses) == len(layout.nodes) - layout.primaries
    )


def until(done: Callable[[], bool], what: str, timeout_s: float = FORM_TIMEOUT_S) -> None:
    deadline = time.monotonic() + timeout_s
    while not done():
        if time.monotonic() > deadline:
            raise ValkeyError(f"the cluster did not reach {what} within {timeout_s:g} s")
        time.sleep(0.1)
