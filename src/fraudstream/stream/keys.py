"""Names of every stream and key, and the stable partition of a customer.

One customer always maps to the same input partition (CRC-32 of the id, stable across
processes and hosts, unlike ``hash()``), so their events are scored in order by one worker.

On a Valkey Cluster (``cluster=True``) every name carries a hash tag, so that what one
script or MULTI touches lives in one slot: a partition's input stream, lease, generation
counter and outbox share the partition's tag (`partition_tag`, chosen so the partitions
spread evenly over the slots), and the shared streams (decisions, dead letters, labels and
their log, the workers' heartbeats, the relay marks) share the prefix's tag, so the sink's
and the producer's transactions over them stay single-slot. See `fraudstream.stream.relay`.
"""

from __future__ import annotations

import functools
import zlib
from dataclasses import dataclass

from redis.crc import REDIS_CLUSTER_HASH_SLOTS, key_slot

from fraudstream.config import Settings

GROUP = "scorers"
PAYLOAD = b"d"
"""Each entry carries the record as one JSON blob: ~2x the XADD rate of one field per column."""
TX = b"t"
"""A decision entry also carries its transaction as received, so that a consumer of
decisions (the SQL sink) has both from one entry, written in the same commit."""
EXPLAIN = b"x"
"""A flagged decision's entry also carries its `Explanation` (the model's feature values and
contributions), for the system of record."""


def partition_of(customer_id: str, partitions: int) -> int:
    """Stable partition of a customer id.

    >>> partition_of("42", 16) == partition_of("42", 16)
    True
    """
    return zlib.crc32(customer_id.encode()) % partitions


@functools.cache
def partition_tag(prefix: str, partition: int, partitions: int) -> str:
    """The hash tag of a partition's keys on a cluster: ``{prefix}.{partition}.{k}`` with the
    smallest ``k`` whose slot falls in the partition's even share of the 16384 slots, so
    that P partitions land on the nodes of an evenly split cluster in equal numbers (plain
    ``tx.0`` … ``tx.15`` would fall wherever CRC16 puts them).

    >>> key_slot(partition_tag("tx", 3, 16).encode()) // 1024
    3
    """
    low = partition * REDIS_CLUSTER_HASH_SLOTS // partitions
    high = (partition + 1) * REDIS_CLUSTER_HASH_SLOTS // partitions
    k = 0
    while not low <= key_slot(f"{prefix}.{partition}.{k}".encode()) < high:
        k += 1
    return f"{prefix}.{partition}.{k}"


@dataclass(frozen=True)
class StreamKeys:
    """The key layout under one prefix (``tx`` by default); hash-tagged on a cluster."""

    prefix: str
    partitions: int
    cluster: bool = False

    @classmethod
    def of(cls, settings: Settings) -> StreamKeys:
        """The layout the settings' server takes (hash-tagged for a ``redis+cluster://``)."""
        return cls(settings.stream_prefix, settings.partitions, settings.on_cluster)

    def _part(self, partition: int) -> str:
        """The suffix of a partition's key names: its hash tag on a cluster."""
        if not self.cluster:
            return f".{partition}"
        return f".{{{partition_tag(self.prefix, partition, self.partitions)}}}"

    def _shared(self, name: str) -> str:
        return f"{self.prefix}.{name}" + (f".{{{self.prefix}}}" if self.cluster else "")

    def input(self, partition: int) -> str:
        return f"{self.prefix}.in{self._part(partition)}"

    def inputs(self) -> list[str]:
        return [self.input(p) for p in range(self.partitions)]

    @property
    def decisions(self) -> str:
        return self._shared("decisions")

    @property
    def deadletter(self) -> str:
        return self._shared("deadletter")

    @property
    def labels(self) -> str:
        """Late ground truth (chargebacks, review verdicts), one stream for all partitions."""
        return self._shared("labels")

    @property
    def label_log(self) -> str:
        """Every label published, for the SQL sink alone. The workers delete each entry of
        `labels` once applied, so another consumer group there would miss most of them;
        the sink reads this copy instead, which only a length cap trims."""
        return self._shared("labels.log")

    @property
    def workers(self) -> str:
        """Sorted set: consumer name -> last heartbeat (ms)."""
        return self._shared("workers")

    def lease(self, partition: int) -> str:
        """String, expiring: the partition's holder and generation (``consumer/7``)."""
        return f"{self.prefix}.lease{self._part(partition)}"

    def lease_generation(self, partition: int) -> str:
        """Counter, never expiring: how many times the partition's lease was taken."""
        return f"{self.prefix}.lease{self._part(partition)}.generation"

    def outbox(self, partition: int) -> str:
        """Cluster only. Stream: what a partition's fenced commits decided, until relayed
        to the shared streams (`fraudstream.stream.relay`)."""
        return f"{self.prefix}.outbox{self._part(partition)}"

    @property
    def relayed(self) -> str:
        """Cluster only. Hash: partition -> the last outbox entry id relayed."""
        return self._shared("relayed")
