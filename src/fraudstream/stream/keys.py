"""Names of every stream and key, and the stable partition of a customer.

One customer always maps to the same input partition (CRC-32 of the id, stable across
processes and hosts, unlike ``hash()``), so their events are scored in order by one worker.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass

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


@dataclass(frozen=True)
class StreamKeys:
    """The key layout under one prefix (``tx`` by default)."""

    prefix: str
    partitions: int

    def input(self, partition: int) -> str:
        return f"{self.prefix}.in.{partition}"

    def inputs(self) -> list[str]:
        return [self.input(p) for p in range(self.partitions)]

    @property
    def decisions(self) -> str:
        return f"{self.prefix}.decisions"

    @property
    def deadletter(self) -> str:
        return f"{self.prefix}.deadletter"

    @property
    def labels(self) -> str:
        """Late ground truth (chargebacks, review verdicts), one stream for all partitions."""
        return f"{self.prefix}.labels"

    @property
    def label_log(self) -> str:
        """Every label published, for the SQL sink alone. The workers delete each entry of
        `labels` once applied, so another consumer group there would miss most of them;
        the sink reads this copy instead, which only a length cap trims."""
        return f"{self.prefix}.labels.log"

    @property
    def workers(self) -> str:
        """Sorted set: consumer name -> last heartbeat (ms)."""
        return f"{self.prefix}.workers"

    def lease(self, partition: int) -> str:
        """String, expiring: the partition's holder and generation (``consumer/7``)."""
        return f"{self.prefix}.lease.{partition}"

    def lease_generation(self, partition: int) -> str:
        """Counter, never expiring: how many times the partition's lease was taken."""
        return f"{self.prefix}.lease.{partition}.generation"
