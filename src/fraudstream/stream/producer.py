"""Producer: transactions into the partitioned input streams, pipelined in batches.

One round trip per batch (never per transaction): ~200 µs a round trip here, so batching is
the difference between ~5k and ~80k messages/s. A label goes to the workers' labels stream
and, in the same MULTI/EXEC, to the label log the SQL sink stores (`StreamKeys.label_log`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence

import redis

from fraudstream.features.wire import (
    Command,
    Wire,
    as_redis_error,
    is_cluster,
    raise_first_error,
)
from fraudstream.schema import Label, Transaction, encode
from fraudstream.stream.keys import PAYLOAD, StreamKeys, partition_of

LABEL_LOG_MAXLEN = 1_000_000
"""Labels kept in the label log for the sink (approximately): a sink further behind than
this loses the oldest, as it does decisions beyond ``decisions_maxlen``."""


class Producer:
    """Writes transactions to ``{prefix}.in.{partition}``."""

    def __init__(self, client: redis.Redis, keys: StreamKeys, *, batch_size: int = 500) -> None:
        self.client = client
        self.keys = keys
        self.batch_size = batch_size
        self.wire = Wire(client)

    def send(
        self, transactions: Iterable[Transaction], on_sent: Callable[[int], None] | None = None
    ) -> int:
        """Send validated transactions; returns how many were written (``on_sent`` is told
        the count so far after each round trip)."""
        parts = self.keys.partitions
        entries = (
            (self.keys.input(partition_of(tx.customer_id, parts)), encode(tx))
            for tx in transactions
        )
        return self.send_to_streams(entries, on_sent)

    def send_encoded(self, entries: Iterable[tuple[int, bytes]]) -> int:
        """Send pre-encoded ``(partition, json_bytes)`` entries (the generator's fast path,
        and the way to inject a malformed payload in tests)."""
        return self.send_to_streams((self.keys.input(p), payload) for p, payload in entries)

    def send_labels(self, labels: Iterable[Label]) -> int:
        """Labels (chargebacks, review verdicts) go to one stream, ``{prefix}.labels``
        (and its log)."""
        return self.send_to_streams((self.keys.labels, encode(label)) for label in labels)

    def send_to_streams(
        self, entries: Iterable[tuple[str, bytes]], on_sent: Callable[[int], None] | None = None
    ) -> int:
        """Send ``(stream, json_bytes)`` entries, one pipeline per ``batch_size``."""
        sent = 0
        batch: list[tuple[str, bytes]] = []
        for entry in entries:
            batch.append(entry)
            if len(batch) >= self.batch_size:
                sent += self._flush(batch)
                batch = []
                if on_sent is not None:
                    on_sent(sent)
        if batch:
            sent += self._flush(batch)
        return sent

    def _flush(self, batch: Sequence[tuple[str, bytes]]) -> int:
        """One round trip; a transaction when the batch holds labels, so that a label is in
        both of its streams or in neither (on a cluster the labels' transaction is apart:
        a MULTI stays in one slot)."""
        labels = self.keys.labels
        atomic = any(stream == labels for stream, _ in batch)
        if atomic and self.keys.cluster:
            self._send([e for e in batch if e[0] != labels], atomic=False)
            self._send([e for e in batch if e[0] == labels], atomic=True)
        else:
            self._send(batch, atomic=atomic)
        return len(batch)

    def _send(self, batch: Sequence[tuple[str, bytes]], *, atomic: bool) -> None:
        """One write of the whole round trip, packed by hiredis (`Wire`). redis-py's
        pipeline wrote it in parts of ~6,000 bytes, and a worker blocked on the streams was
        woken by the first part: it took that part's entries, and the rest waited for its
        next batch. (A cluster's transaction, one slot's, goes through redis-py's.)"""
        labels, log = self.keys.labels, self.keys.label_log
        commands: list[Command] = []
        for stream, payload in batch:
            commands.append(("XADD", stream, "*", PAYLOAD, payload))
            if stream == labels:
                trim = ("MAXLEN", "~", LABEL_LOG_MAXLEN)
                commands.append(("XADD", log, *trim, "*", PAYLOAD, payload))
        if not commands:
            return
        if atomic and is_cluster(self.client):
            pipe = self.client.pipeline(transaction=True)
            for command in commands:
                pipe.execute_command(*command)  # type: ignore[no-untyped-call]
            pipe.execute()
            return
        with as_redis_error():
            replies = self.wire.run(commands, atomic=atomic)
        raise_first_error(replies)
