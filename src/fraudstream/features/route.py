"""A cluster batch's commands grouped by the node owning their slot: one round trip per node.

redis-py's cluster pipeline routes command by command in Python (~40 µs each: ~80 % of a
cluster worker's time). Here each command's key is hashed to its slot (C), the commands
are grouped by the slot's primary, and every node gets its group as one pipelined send on
its own connection (`Session`: hiredis packs, parses), all sends before any receive, so
the nodes work in parallel. Valkey runs no ``MGET`` or ``MULTI`` across slots, not even
on one node, so the commands stay single-key: the per-customer compare-and-set
(``fs_put``) keeps its meaning, shared increments commute. A command redirected (``MOVED``
/ ``ASK``: a slot migrated, a failover) or a node that cannot be reached has its commands
run again through redis-py's cluster pipeline, which follows redirections and refreshes
the slot map; that is the retry the pipeline itself would have made.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import Any

import numpy as np
import redis
from redis.cluster import ClusterNode, RedisCluster

from fraudstream.features.slots import key_slots
from fraudstream.features.wire import Client, Command, FeatureStoreError, Session, Wire

REDIRECTS = ("MOVED ", "ASK ", "TRYAGAIN", "CLUSTERDOWN")
"""Replies saying the command ran nowhere: the slot's node is elsewhere or not ready."""
KEY_AT = {"FCALL": 3, "FCALL_RO": 3}
"""Where a command's (first) key is, when not right after the command's name."""


def wire_for(client: Client) -> Wire:
    """The engine's `Wire`: per node on a cluster, else the one-node wire."""
    return NodeWire(client) if isinstance(client, RedisCluster) else Wire(client)


def redirected(reply: Any) -> bool:
    return isinstance(reply, Exception) and str(reply).startswith(REDIRECTS)


class NodeWire(Wire):
    """`Wire.run` on a cluster, one round trip per node (``round_trips`` counts them)."""

    client: RedisCluster

    def __init__(self, client: RedisCluster) -> None:
        super().__init__(client)
        self.round_trips: Counter[str] = Counter()
        """Sends per node (``host:port``), for tests and benchmarks."""
        key_slots(["{}"])  # compiled now, not in the first batch (a worker's leases wait)

    def run(self, commands: Sequence[Command], *, atomic: bool = False) -> list[Any]:
        """As `Wire.run`; ``atomic`` is refused (no transaction spans slots).

        Raises:
            FeatureStoreError: a node failed and the cluster pipeline's retry too.
        """
        if atomic:
            raise FeatureStoreError("a cluster cannot run one transaction across slots")
        replies: list[Any] = [None] * len(commands)
        again: list[int] = []
        sent: list[tuple[Session, list[int]]] = []
        groups = self._groups(commands)
        if groups is None:
            return self._run_cluster(self.client, commands)
        try:
            for node, where in groups:
                session = self._send(node, [commands[i] for i in where])
                if session is None:
                    again += where
                else:
                    sent.append((session, where))
            while sent:
                session, where = sent.pop(0)
                again += _receive(session, where, replies)
        finally:
            for session, _ in sent:  # an exception left replies owed: drop the connections
                session.close(broken=True)
        if again:
            again.sort()  # a key's commands stay in their order
            retried = self._run_cluster(self.client, [commands[i] for i in again])
            for i, reply in zip(again, retried, strict=True):
                replies[i] = reply
        return replies

    def _groups(self, commands: Sequence[Command]) -> list[tuple[ClusterNode, list[int]]] | None:
        """Command indices per primary of their slot, in order; None while a slot has no
        primary known (the pipeline routes them then)."""
        slots = key_slots([c[KEY_AT.get(c[0], 1)] for c in commands])
        uniq, inverse = np.unique(slots, return_inverse=True)
        cache = self.client.nodes_manager.slots_cache
        names: dict[str, int] = {}
        nodes: list[ClusterNode] = []
        owner = np.empty(len(uniq), dtype=np.int64)
        for u, slot in enumerate(uniq.tolist()):
            if not cache.get(slot):  # a failover under way
                return None
            node = cache[slot][0]
            owner[u] = at = names.setdefault(node.name, len(nodes))
            if at == len(nodes):
                nodes.append(node)
        of = owner[inverse]
        order = np.argsort(of, kind="stable")
        bounds = np.searchsorted(of[order], np.arange(len(nodes) + 1))
        where = [order[bounds[n] : bounds[n + 1]].tolist() for n in range(len(nodes))]
        return list(zip(nodes, where, strict=True))

    def _send(self, node: ClusterNode, commands: list[Command]) -> Session | None:
        """``commands`` sent to ``node`` on a connection of its pool; None if unreachable."""
        try:
            session = Wire(self.client.get_redis_connection(node)).open()
        except (OSError, redis.RedisError):
            return None
        try:
            session.send(commands)
        except FeatureStoreError:
            session.close(broken=True)
            return None
        self.round_trips[node.name] += 1
        return session


def _receive(session: Session, where: list[int], replies: list[Any]) -> list[int]:
    """A node's replies into ``replies``; returns the indices to run again (redirected, or
    all of them when the connection broke: which ran is unknown, as for the pipeline)."""
    try:
        got = session.receive()
    except FeatureStoreError:
        session.close(broken=True)
        return where
    except BaseException:
        session.close(broken=True)
        raise
    session.close()
    again = []
    for i, reply in zip(where, got, strict=True):
        if redirected(reply):
            again.append(i)
        else:
            replies[i] = reply
    return again
