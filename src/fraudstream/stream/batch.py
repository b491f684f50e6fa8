"""A batch: at most ``batch_size`` input entries, read or claimed from the partitions a worker
owns, with the leases it was read under.

``COUNT`` of ``XREADGROUP`` and ``XAUTOCLAIM`` is per stream, so a worker owning 16 partitions
would otherwise hold up to 16 batches at once (and latency and memory with them). `share`
splits the budget over the streams instead, rotating the remainder so that no partition is
favoured; with more streams than budget it rotates a window of ``batch_size`` streams, one
entry each. The labels stream counts as one more stream: labels are rare and cheap, and a
budget that includes them is a bound that holds without exceptions.

Reading never waits to fill a batch: a blocking ``XREADGROUP`` returns as soon as any
stream has entries; only if some streams filled their share and what is left gives each of
them one more entry at least does a second, non-blocking round trip share it out among them
(so a single hot partition still fills its batches, while evenly loaded ones do not pay a
round trip for a handful of entries).

The blocking read goes with a non-blocking one in the same write (`BatchReader._read`): it
takes one entry per stream, the second the rest of each stream's share. The server wakes a
blocked reader right after the first ``XADD`` to one of its streams, before the rest of
the producer's pipeline; the second read runs after that pipeline, and so takes what came
with the entry that woke us. Alone, the blocking read returned that one entry, and the rest
of the burst waited for its batch to be scored: with a generator sending every 10 ms,
batches of ~5 where ~10 had arrived, twice the batches and the queueing behind them. A
producer writing one entry at a time gains nothing and loses nothing: the second read finds
none.

On a cluster one ``XREADGROUP`` cannot name streams of different slots: each stream is read
on its own, without blocking, in one pipeline (a round trip per node), and a read that
finds nothing anywhere waits `POLL_MS` before the next (`BatchReader._poll`).
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import redis

from fraudstream.features.wire import Command, Wire, as_redis_error, raise_first_error
from fraudstream.stream.keys import GROUP, StreamKeys
from fraudstream.stream.lanes import share_of
from fraudstream.stream.leases import Lease, LeaseManager

POLL_MS = 20
"""On a cluster, the pause after a read that found nothing (at most ``block_ms``): the
latency an idle pipeline adds to the first transaction that arrives."""

Entry = tuple[str, bytes, dict[bytes, bytes]]
"""(stream, entry id, fields) of one input message."""


@dataclass(frozen=True)
class Batch:
    entries: list[Entry]
    leases: list[Lease]
    """The leases of the partitions its entries came from, as held when it was read: its
    commit applies only if they still stand (the labels stream needs none)."""


def share(budget: int, streams: Sequence[str], turn: int) -> dict[str, int]:
    """Split ``budget`` entries over ``streams``: ``budget // n`` each, and one more for
    ``budget % n`` of them taken in rotation by ``turn``, so that over successive turns each
    stream gets as much as any other. Streams without a share are left out.

    >>> share(10, ["a", "b", "c"], turn=0)
    {'a': 4, 'b': 3, 'c': 3}
    >>> share(10, ["a", "b", "c"], turn=1)
    {'a': 3, 'b': 4, 'c': 3}
    >>> share(2, ["a", "b", "c"], turn=1)  # more streams than budget: a rotating window
    {'a': 1, 'c': 1}
    """
    n = len(streams)
    base, extra = divmod(budget, n)
    start = turn * extra % n
    order = [*streams[start:], *streams[:start]]
    counts = {stream: base + (i < extra) for i, stream in enumerate(order)}
    return {stream: counts[stream] for stream in streams if counts[stream]}


class BatchReader:
    """New entries (``read``) or stale pending ones (``claim``) of our partitions and of the
    labels stream, one budget per batch."""

    def __init__(
        self,
        client: redis.Redis,
        keys: StreamKeys,
        leases: LeaseManager,
        *,
        batch_size: int,
        block_ms: int,
        claim_idle_ms: int,
        lane: int = 0,
        lanes: int = 1,
    ) -> None:
        self.client = client
        self.keys = keys
        self.leases = leases
        self.consumer = leases.consumer
        self.batch_size = batch_size
        self.block_ms = block_ms
        self.claim_idle_ms = claim_idle_ms
        self.lane = lane
        self.lanes = lanes
        """Read only this lane's share of the partitions held among this many open lanes
        (`fraudstream.stream.lanes`; a lane beyond them is closed: no share); the labels
        stream is lane 0's."""
        self._turn = 0
        self.wire = Wire(client)

    def has_share(self) -> bool:
        """Whether this lane is open and has a partition to read (`share_of` gives lane
        ``i`` of ``n`` open lanes a share when it holds more than ``i`` partitions)."""
        return self.lane < self.lanes and self.lane < len(self.leases.held)

    def read(self) -> Batch:
        """Entries never delivered: an equal share of every stream (blocking until one has
        some), then what budget is left to the streams that filled their share."""
        held, counts = self._plan()
        if not counts:  # a lane without partitions (closed, or more lanes than partitions)
            time.sleep(self.block_ms / 1000)
            return Batch([], [])
        if self.keys.cluster:
            return _batch(self._poll(counts), held)
        first = min(counts.values())
        with as_redis_error():
            return _batch(self._read(counts, first), held)

    def _read(self, counts: dict[str, int], first: int) -> list[Entry]:
        streams = list(counts)
        reads = [self._xreadgroup(streams, 1, block=True)]
        if first > 1:
            reads.append(self._xreadgroup(streams, first - 1))
        with self.wire.session() as session:
            entries = _by_stream([e for reply in session.run(reads) for e in _raw_entries(reply)])
            got = Counter(stream for stream, _, _ in entries)
            full = [stream for stream in counts if got[stream] == first]
            left = self.batch_size - len(entries)
            if full and left >= len(full):
                more = share(left, full, self._turn).items()
                replies = session.run([self._xreadgroup([s], n) for s, n in more])
                entries += [e for reply in replies for e in _raw_entries(reply)]
        return entries

    def _xreadgroup(self, streams: list[str], count: int, *, block: bool = False) -> Command:
        """``XREADGROUP`` of new entries, sent raw (`Wire`): redis-py turned each entry's
        fields into a dict in Python, ~5 µs a transaction at full speed."""
        wait = ("BLOCK", self.block_ms) if block else ()
        ids = [">"] * len(streams)
        return (
            "XREADGROUP",
            "GROUP",
            GROUP,
            self.consumer,
            "COUNT",
            count,
            *wait,
            "STREAMS",
            *streams,
            *ids,
        )

    def _poll(self, counts: dict[str, int]) -> list[Entry]:
        """Each stream's share, one non-blocking read each in one pipeline; a pause of
        `POLL_MS` when none had anything."""
        pipe = self.client.pipeline(transaction=False)
        for stream, count in counts.items():
            pipe.xreadgroup(GROUP, self.consumer, {stream: ">"}, count=count)
        entries = [e for reply in pipe.execute() for e in _entries(reply or [])]
        if not entries:
            time.sleep(min(self.block_ms, POLL_MS) / 1000)
        return entries

    def claim(self) -> Batch:
        """Entries a consumer left pending for longer than ``claim_idle_ms`` (it died or
        stalled; we own the partition now): they are taken over."""
        held, counts = self._plan()
        pipe = self.client.pipeline(transaction=False)
        for stream, count in counts.items():
            pipe.xautoclaim(
                stream,
                GROUP,
                self.consumer,
                min_idle_time=self.claim_idle_ms,
                start_id="0-0",
                count=count,
            )
        replies: list[Any] = pipe.execute()
        entries = [
            (stream, entry_id, fields)
            for stream, reply in zip(counts, replies, strict=True)
            for entry_id, fields in reply[1]
            if fields is not None
        ]
        return _batch(entries, held)

    def _plan(self) -> tuple[dict[str, Lease], dict[str, int]]:
        """The leases as held now (before the read: a batch is fenced by the leases it was
        read under, never by later ones) and this turn's share of each stream."""
        held_now = sorted(self.leases.held.items())
        mine = share_of(held_now, self.lane, self.lanes) if self.lane < self.lanes else []
        held = {self.keys.input(p): lease for p, lease in mine}
        streams = [*held, self.keys.labels] if self.lane == 0 else [*held]
        self._turn += 1
        return held, share(self.batch_size, streams, self._turn) if streams else {}


def _entries(reply: Any) -> list[Entry]:
    return [
        (_text(stream), entry_id, fields)
        for stream, messages in reply
        for entry_id, fields in messages
        if fields is not None
    ]


def _raw_entries(reply: Any) -> list[Entry]:
    """`_entries` of a raw ``XREADGROUP`` reply: None when nothing came, else per stream
    its entries with their fields as flat lists (in pairs under RESP2, a map under RESP3).

    Raises:
        redis.ResponseError: the server refused the read (e.g. the group is gone).
    """
    if reply is None:
        return []
    raise_first_error([reply])
    out: list[Entry] = []
    for stream, messages in reply.items() if isinstance(reply, dict) else reply:
        name = _text(stream)
        for entry_id, flat in messages:
            if flat is not None:
                fields = iter(flat)
                out.append((name, entry_id, dict(zip(fields, fields, strict=True))))
    return out


def _by_stream(entries: list[Entry]) -> list[Entry]:
    """Each stream's entries together, in their order (both reads may hold a stream's)."""
    streams: dict[str, list[Entry]] = {}
    for entry in entries:
        streams.setdefault(entry[0], []).append(entry)
    return [entry for group in streams.values() for entry in group]


def _batch(entries: list[Entry], held: dict[str, Lease]) -> Batch:
    streams = {stream for stream, _, _ in entries}
    return Batch(entries, [lease for stream, lease in held.items() if stream in streams])


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
