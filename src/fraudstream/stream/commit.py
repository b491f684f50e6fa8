"""A batch's commit: decisions (streamed and kept by id), dead letters, acks and deletes in
one MULTI/EXEC, fenced by the leases the batch was read under.

The fence is ``WATCH`` on each lease key and generation counter of the batch's partitions,
a check that every lease still stands (`Lease.still_ours`), then ``MULTI … EXEC``: if a
lease moved between the check and ``EXEC`` the transaction does not apply and the check is
made again. A batch whose lease was lost is never committed: nothing is written or acked,
its entries stay pending for the partition's owner, who claims and decides them. One node
only: a cluster runs no MULTI across slots, and commits as `fraudstream.stream.relay` says.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

import redis
from redis.client import Pipeline
from redis.typing import EncodableT, FieldT

from fraudstream.schema import Decision, Explanation, encode
from fraudstream.stream.batch import Batch
from fraudstream.stream.consumer import DeadLetter
from fraudstream.stream.decided import DEFAULT_TTL_S, DecidedStore
from fraudstream.stream.keys import EXPLAIN, GROUP, PAYLOAD, TX, StreamKeys
from fraudstream.stream.leases import Lease

ATTEMPTS = 3
"""Checks of the fence before a batch is given up: a lease key changes under a live owner
only when it expires and is re-taken, so a second look settles it."""


def decision_entry(
    decision: Decision, transaction: bytes | None, explanation: Explanation | None = None
) -> dict[FieldT, EncodableT]:
    """A ``tx.decisions`` entry: the decision, its transaction when known, and what the model
    saw when it was flagged."""
    entry: dict[FieldT, EncodableT] = {PAYLOAD: encode(decision)}
    if transaction is not None:
        entry[TX] = transaction
    if explanation is not None:
        entry[EXPLAIN] = encode(explanation)
    return entry


class Committer:
    """Writes what a batch decided, if the batch's leases still stand."""

    def __init__(
        self,
        client: redis.Redis,
        keys: StreamKeys,
        *,
        decisions_maxlen: int,
        lease_ttl_ms: int,
        decision_ttl_s: int = DEFAULT_TTL_S,
    ) -> None:
        self.client = client
        self.keys = keys
        self.decisions_maxlen = decisions_maxlen
        self.lease_ttl_ms = lease_ttl_ms
        self.decided = DecidedStore(client, keys.prefix, decision_ttl_s)

    def commit(
        self,
        batch: Batch,
        decisions: Sequence[Decision],
        dead: list[DeadLetter],
        transactions: Mapping[str, bytes] | None = None,
        explanations: Mapping[str, Explanation] | None = None,
        origins: Sequence[str] = (),
    ) -> bool:
        """Returns False, having written nothing, if a lease of the batch was lost.
        ``transactions``: id -> the transaction's payload as received, streamed beside its
        decision; ``explanations``: id -> what the model saw, for the flagged ones;
        ``origins`` (each decision's input stream) serve the cluster's commit only."""
        with self.client.pipeline(transaction=True) as pipe:
            for _ in range(ATTEMPTS):
                try:
                    if not self._fence(pipe, batch.leases):
                        return False
                    self._queue(
                        pipe, batch, decisions, dead, transactions or {}, explanations or {}
                    )
                    pipe.execute()
                    return True
                except redis.WatchError:
                    continue
        return False

    def recover(self, partitions: Iterable[int]) -> None:
        """Nothing to do on one node (see `fraudstream.stream.relay.ClusterCommitter`)."""

    def _fence(self, pipe: Pipeline, leases: list[Lease]) -> bool:
        """Check the leases under WATCH, then open the transaction; a lease that expired
        with nobody taking it since is taken back in it."""
        lapsed = self._check(pipe, leases) if leases else []
        if lapsed is None:
            return False
        pipe.multi()
        for lease in lapsed:
            pipe.set(self.keys.lease(lease.partition), lease.token, px=self.lease_ttl_ms)
        return True

    def _check(self, pipe: Pipeline, leases: list[Lease]) -> list[Lease] | None:
        """None if a lease is lost; else the leases that lapsed and are to be taken back."""
        names = [
            name
            for lease in leases
            for name in (
                self.keys.lease(lease.partition),
                self.keys.lease_generation(lease.partition),
            )
        ]
        pipe.watch(*names)  # type: ignore[no-untyped-call]
        values: list[bytes | None] = pipe.mget(names)  # type: ignore[assignment]
        lapsed = []
        for i, lease in enumerate(leases):
            value, generation = values[2 * i], values[2 * i + 1]
            if not lease.still_ours(value, generation):
                return None
            if value is None:
                lapsed.append(lease)
        return lapsed

    def _queue(
        self,
        pipe: Pipeline,
        batch: Batch,
        decisions: Sequence[Decision],
        dead: list[DeadLetter],
        transactions: Mapping[str, bytes],
        explanations: Mapping[str, Explanation],
    ) -> None:
        for decision in decisions:
            tx = decision.transaction_id
            pipe.xadd(
                self.keys.decisions,
                decision_entry(decision, transactions.get(tx), explanations.get(tx)),
                maxlen=self.decisions_maxlen,
                approximate=True,
            )
        self.decided.queue_keep(pipe, decisions)
        for record in dead:
            pipe.xadd(self.keys.deadletter, record)
        by_stream: dict[str, list[bytes]] = {}
        for stream, entry_id, _ in batch.entries:
            by_stream.setdefault(stream, []).append(entry_id)
        for stream, ids in by_stream.items():
            pipe.xack(stream, GROUP, *ids)
            pipe.xdel(stream, *ids)
