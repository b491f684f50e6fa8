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
from typing import Any

import redis
from redis.typing import EncodableT, FieldT

from fraudstream.features.wire import Command, Session, WatchConflict, Wire, raise_first_error
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
        self.wire = Wire(client)

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
        ``origins`` (each decision's input stream) serve the cluster's commit only.

        Raises:
            FeatureStoreError: the connection failed (nothing was written: the batch stays
                pending, as after a failed feature write).
            redis.ResponseError: the server refused a command of the transaction.
        """
        commands = self._commands(batch, decisions, dead, transactions or {}, explanations or {})
        with self.wire.session() as session:
            for _ in range(ATTEMPTS):
                lapsed = self._check(session, batch.leases) if batch.leases else []
                if lapsed is None:
                    return False
                retake = [
                    ("SET", self.keys.lease(lease.partition), lease.token, "PX", self.lease_ttl_ms)
                    for lease in lapsed
                ]
                try:
                    replies = session.run([*retake, *commands], atomic=True)
                except WatchConflict:
                    continue
                raise_first_error(replies)
                return True
        return False

    def recover(self, partitions: Iterable[int]) -> None:
        """Nothing to do on one node (see `fraudstream.stream.relay.ClusterCommitter`)."""

    def _check(self, session: Session, leases: list[Lease]) -> list[Lease] | None:
        """Under ``WATCH``: None if a lease is lost; else the leases that lapsed with nobody
        taking them since, to be taken back in the transaction."""
        names = [
            name
            for lease in leases
            for name in (
                self.keys.lease(lease.partition),
                self.keys.lease_generation(lease.partition),
            )
        ]
        values: list[bytes | None] = session.run([("WATCH", *names), ("MGET", *names)])[1]
        lapsed = []
        for i, lease in enumerate(leases):
            value, generation = values[2 * i], values[2 * i + 1]
            if not lease.still_ours(value, generation):
                return None
            if value is None:
                lapsed.append(lease)
        return lapsed

    def _commands(
        self,
        batch: Batch,
        decisions: Sequence[Decision],
        dead: list[DeadLetter],
        transactions: Mapping[str, bytes],
        explanations: Mapping[str, Explanation],
    ) -> list[Command]:
        """The transaction's commands, packed by hiredis on the way out (`Session`): through
        redis-py's pipeline each ``XADD`` cost ~35 µs of Python, packing and parsing its
        reply, a quarter of a worker's time at full speed."""
        stream, maxlen = self.keys.decisions, self.decisions_maxlen
        commands: list[Command] = []
        for decision in decisions:
            tx = decision.transaction_id
            entry = decision_entry(decision, transactions.get(tx), explanations.get(tx))
            commands.append(("XADD", stream, "MAXLEN", "~", maxlen, "*", *flat(entry)))
        commands += self.decided.keep_commands(decisions)
        commands += [("XADD", self.keys.deadletter, "*", *flat(record)) for record in dead]
        by_stream: dict[str, list[bytes]] = {}
        for stream_name, entry_id, _ in batch.entries:
            by_stream.setdefault(stream_name, []).append(entry_id)
        for stream_name, ids in by_stream.items():
            commands.append(("XACK", stream_name, GROUP, *ids))
            commands.append(("XDEL", stream_name, *ids))
        return commands


def flat(fields: Mapping[Any, Any] | Sequence[Any]) -> list[Any]:
    """Field/value arguments of a stream entry (given as a mapping, or flat already)."""
    if isinstance(fields, Mapping):
        return [x for pair in fields.items() for x in pair]
    return list(fields)
