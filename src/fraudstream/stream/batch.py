"""A batch: the input entries read or claimed from the partitions a worker owns, with the
leases it was read under.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import redis

from fraudstream.stream.keys import GROUP, StreamKeys
from fraudstream.stream.leases import Lease, LeaseManager

Entry = tuple[str, bytes, dict[bytes, bytes]]
"""(stream, entry id, fields) of one input message."""


@dataclass(frozen=True)
class Batch:
    entries: list[Entry]
    leases: list[Lease]
    """The leases of the partitions its entries came from, as held when it was read: its
    commit applies only if they still stand (the labels stream needs none)."""


class BatchReader:
    """New entries (``read``) or stale pending ones (``claim``) of our partitions and of the
    labels stream."""

    def __init__(
        self,
        client: redis.Redis,
        keys: StreamKeys,
        leases: LeaseManager,
        *,
        batch_size: int,
        block_ms: int,
        claim_idle_ms: int,
    ) -> None:
        self.client = client
        self.keys = keys
        self.leases = leases
        self.consumer = leases.consumer
        self.batch_size = batch_size
        self.block_ms = block_ms
        self.claim_idle_ms = claim_idle_ms

    def read(self) -> Batch:
        """Entries never delivered, blocking until one of the streams has some."""
        held, streams = self._plan()
        reply: Any = self.client.xreadgroup(
            GROUP,
            self.consumer,
            dict.fromkeys(streams, ">"),
            count=self.batch_size,
            block=self.block_ms,
        )
        return _batch(_entries(reply or []), held)

    def claim(self) -> Batch:
        """Entries a consumer left pending for longer than ``claim_idle_ms`` (it died or
        stalled; we own the partition now): they are taken over."""
        held, streams = self._plan()
        pipe = self.client.pipeline(transaction=False)
        for stream in streams:
            pipe.xautoclaim(
                stream,
                GROUP,
                self.consumer,
                min_idle_time=self.claim_idle_ms,
                start_id="0-0",
                count=self.batch_size,
            )
        replies: list[Any] = pipe.execute()
        entries = [
            (stream, entry_id, fields)
            for stream, reply in zip(streams, replies, strict=True)
            for entry_id, fields in reply[1]
            if fields is not None
        ]
        return _batch(entries, held)

    def _plan(self) -> tuple[dict[str, Lease], list[str]]:
        """The leases as held now (before the read: a batch is fenced by the leases it was
        read under, never by later ones) and the streams to read."""
        held = {self.keys.input(p): lease for p, lease in sorted(self.leases.held.items())}
        return held, [*held, self.keys.labels]


def _entries(reply: Any) -> list[Entry]:
    return [
        (_text(stream), entry_id, fields)
        for stream, messages in reply
        for entry_id, fields in messages
        if fields is not None
    ]


def _batch(entries: list[Entry], held: dict[str, Lease]) -> Batch:
    streams = {stream for stream, _, _ in entries}
    return Batch(entries, [lease for stream, lease in held.items() if stream in streams])


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
