"""Decisions kept by transaction id: what makes scoring idempotent.

A payment request is retried (a timeout, a double click, a client's own retry policy): the
same ``transaction_id`` must get the same answer and must not count twice in the customer's
features. The first decision of an id is kept for ``ttl_s`` (7 days by default) as one key,
``{prefix}:decided:{transaction_id}``, holding a compact msgpack array (field names left
out: ~230 bytes for a flagged decision with two reasons, against ~370 for the JSON); later
requests for that id get it back instead of a new score.

Keeping is first-writer-wins (``SET … NX GET``): when two processes decide the same id at the
same moment, both answer with the one that was stored first. The API keeps what it decides
(`keep`), the stream workers keep theirs in their fenced commit (`queue_keep`, the same
``SET … NX EX`` in one script call), so an id has one kept decision whichever path decided it
first.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import msgspec
import redis
from redis.client import Pipeline
from redis.typing import EncodableT, FieldT

from fraudstream.features.wire import raise_first_error
from fraudstream.schema import Decision
from fraudstream.valkey import is_cluster

DEFAULT_TTL_S = 7 * 86_400
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
ONE_US = timedelta(microseconds=1)

# KEYS[i] = the decided key of decision i; ARGV[1] = ttl in seconds;
# ARGV[i + 1] = decision i, packed (`pack`).
# Keeps each decision unless its id has one already (first writer wins); returns 0.
KEEP_ALL_LUA = """
for i, key in ipairs(KEYS) do
  redis.call('SET', key, ARGV[i + 1], 'NX', 'EX', ARGV[1])
end
return 0
"""

# KEYS[1] = the decisions stream; KEYS[1 + i] = the decided key of decision i;
# ARGV[1] = ttl in seconds; ARGV[2] = the stream's approximate MAXLEN; then per decision:
# its packed form, the number of its entry's fields, and the fields and values.
# Per decision: the one kept before it, or false where this one was kept and streamed. The
# XADD goes first: if it fails, this decision (and the rest) is neither kept nor streamed.
KEEP_STREAMED_LUA = """
local out = {}
local a = 3
for i = 2, #KEYS do
  local packed, fields = ARGV[a], tonumber(ARGV[a + 1])
  local earlier = redis.call('GET', KEYS[i])
  if earlier then
    out[i - 1] = earlier
  else
    local args = {KEYS[1], 'MAXLEN', '~', ARGV[2], '*'}
    for j = a + 2, a + 1 + 2 * fields do args[#args + 1] = ARGV[j] end
    redis.call('XADD', unpack(args))
    redis.call('SET', KEYS[i], packed, 'EX', ARGV[1])
    out[i - 1] = false
  end
  a = a + 2 + 2 * fields
end
return out
"""

Compact = tuple[str, int, str, list[str], str, str, float, int, list[str], dict[str, float]]
"""(transaction_id, score, outcome, reasons, model_version, rules_version, latency_ms,
decided_at in epoch µs, shadow, stages)."""

_decoder = msgspec.msgpack.Decoder(Compact)
_encoder = msgspec.msgpack.Encoder()


def pack(decision: Decision) -> bytes:
    """The compact form; `unpack` gives back an equal `Decision`.

    >>> d = Decision(transaction_id="t", score=512, outcome="review", reasons=["r"],
    ...     model_version="m", rules_version="r1", latency_ms=1.5,
    ...     decided_at=datetime(2026, 1, 1, 0, 0, 0, 123456, tzinfo=UTC),
    ...     stages={"queue": 0.5, "features": 0.7, "model": 0.2, "rules": 0.1})
    >>> unpack(pack(d)) == d, len(pack(d)) < len(msgspec.json.encode(d)) / 2
    (True, True)
    """
    stamp = (decision.decided_at - EPOCH) // ONE_US
    return _encoder.encode(
        (
            decision.transaction_id,
            decision.score,
            decision.outcome,
            decision.reasons,
            decision.model_version,
            decision.rules_version,
            decision.latency_ms,
            stamp,
            decision.shadow,
            decision.stages,
        )
    )


def unpack(blob: bytes) -> Decision:
    tx_id, score, outcome, reasons, model, rules, latency, stamp, shadow, stages = _decoder.decode(
        blob
    )
    return Decision(
        transaction_id=tx_id,
        score=score,
        outcome=outcome,  # type: ignore[arg-type]  # written by `pack` from a Decision
        reasons=reasons,
        model_version=model,
        rules_version=rules,
        latency_ms=latency,
        decided_at=EPOCH + timedelta(microseconds=stamp),
        shadow=shadow,
        stages=stages,
    )


class AlreadyDecided(Exception):
    """Some of a batch's ids were decided before (`Undecided`): the batch was abandoned
    before it wrote anything."""

    def __init__(self, found: dict[str, Decision]) -> None:
        super().__init__(f"already decided: {sorted(found)}")
        self.found = found


class Undecided:
    """The check that a batch's ids were never decided, as riders of its feature read
    (`fraudstream.features.wire.Riders`): one ``GET`` per id in the read's round trip, not a
    round trip of its own before it. The replies arrive before the batch writes anything;
    an id found decided raises `AlreadyDecided` there, so the batch is abandoned with the
    customer's features untouched, as if it had been looked up first.

    With ``watch`` (one node) the ids' keys are ``WATCH``ed first: the batch's transaction
    then applies only if no one kept a decision for them since they were found absent, so
    it may keep its own with a plain ``SET`` (`DecidedStore.keep_watched`)."""

    def __init__(
        self, store: DecidedStore, transaction_ids: Sequence[str], *, watch: bool = False
    ) -> None:
        keys = [store.key(t) for t in transaction_ids]
        self.watch = watch and bool(keys)
        self.commands: list[tuple[Any, ...]] = [("WATCH", *keys)] if self.watch else []
        self.commands += [("GET", key) for key in keys]
        self.ids = list(transaction_ids)

    def deliver(self, replies: list[Any]) -> None:
        """Raises:
        redis.RedisError: a ``GET`` (or the ``WATCH``) failed.
        AlreadyDecided: some ids have a kept decision.
        """
        raise_first_error(replies)
        found = replies[1:] if self.watch else replies
        kept = {t: unpack(blob) for t, blob in zip(self.ids, found, strict=True) if blob}
        if kept:
            raise AlreadyDecided(kept)


class DecidedStore:
    """The kept decisions of one deployment (stream prefix)."""

    def __init__(self, client: redis.Redis, prefix: str = "tx", ttl_s: int = DEFAULT_TTL_S):
        self.client = client
        self.prefix = prefix
        self.ttl_s = ttl_s
        self._keep_streamed = client.register_script(KEEP_STREAMED_LUA)

    def key(self, transaction_id: str) -> str:
        return f"{self.prefix}:decided:{transaction_id}"

    def get_many(self, transaction_ids: Sequence[str]) -> list[Decision | None]:
        if not transaction_ids:
            return []
        keys = [self.key(t) for t in transaction_ids]
        if is_cluster(self.client):  # no MGET across slots
            pipe = self.client.pipeline(transaction=False)
            for key in keys:
                pipe.get(key)
            raw: Any = pipe.execute()
        else:
            raw = self.client.mget(keys)
        return [None if blob is None else unpack(blob) for blob in raw]

    def get(self, transaction_id: str) -> Decision | None:
        return self.get_many([transaction_id])[0]

    def keep(self, decisions: Sequence[Decision]) -> list[Decision | None]:
        """Store each decision unless its id has one already; per decision, the one stored
        before it (None where this one was kept)."""
        pipe = self.client.pipeline(transaction=False)
        for d in decisions:
            pipe.set(self.key(d.transaction_id), pack(d), nx=True, get=True, ex=self.ttl_s)
        return [None if blob is None else unpack(blob) for blob in pipe.execute()]

    def keep_streamed(
        self,
        decisions: Sequence[Decision],
        entries: Sequence[Mapping[FieldT, EncodableT]],
        stream: str,
        maxlen: int,
    ) -> list[Decision | None]:
        """`keep`, each decision kept also appended (its ``entries`` item) to ``stream``:
        on one node in one script, so a decision is kept if and only if it was streamed (a
        retry is never answered with a decision the store, the alerts and the analysts never
        received), in one round trip. A cluster keeps the decided keys in their own slots,
        apart from the stream's: there the kept ones are appended right after (a crash in
        between leaves a decision kept and not streamed)."""
        if not decisions:
            return []
        if is_cluster(self.client):
            earlier = self.keep(decisions)
            pipe = self.client.pipeline(transaction=False)
            for entry, before in zip(entries, earlier, strict=True):
                if before is None:
                    pipe.xadd(stream, dict(entry), maxlen=maxlen, approximate=True)
            pipe.execute()
            return earlier
        args: list[EncodableT] = [self.ttl_s, maxlen]
        for d, entry in zip(decisions, entries, strict=True):
            args += [pack(d), len(entry)]
            for name, value in entry.items():
                args += [name, value]
        keys = [stream, *(self.key(d.transaction_id) for d in decisions)]
        replies: Any = self._keep_streamed(keys, args)
        return [unpack(blob) if blob else None for blob in replies]

    def keep_watched(
        self,
        decisions: Sequence[Decision],
        entries: Sequence[Mapping[FieldT, EncodableT]],
        stream: str,
        maxlen: int,
    ) -> list[tuple[Any, ...]]:
        """`keep_streamed` as plain commands for the caller's ``MULTI``/``EXEC``, for ids
        whose keys the transaction ``WATCH``es since it found them absent
        (`Undecided` with ``watch``): a decision kept meanwhile by anyone aborts the whole
        transaction, so no first-writer check is left to run. The API keeps its decisions
        in the transaction that stores their feature state (`FeatureEngine.confirm`): a
        decision is kept and streamed if and only if its transaction counts in the
        features, in the round trip that stores them. A ``SET`` and an ``XADD`` per
        decision cost the server ~10 µs where the script took ~40. A transaction does not
        roll back a command that fails: a decision whose ``XADD`` failed (the stream key
        holding something else) is kept by its ``SET`` all the same; `settle_watched` unkeeps
        it."""
        commands: list[tuple[Any, ...]] = []
        for d, entry in zip(decisions, entries, strict=True):
            fields = [part for item in entry.items() for part in item]
            commands.append(("SET", self.key(d.transaction_id), pack(d), "EX", self.ttl_s))
            commands.append(("XADD", stream, "MAXLEN", "~", maxlen, "*", *fields))
        return commands

    def settle_watched(self, decisions: Sequence[Decision], replies: Sequence[Any]) -> None:
        """After `keep_watched`'s commands ran (``replies``, theirs in order): a decision whose
        ``XADD`` failed is unkept, so that its retry is decided and streamed, not replayed.

        Raises:
            redis.RedisError: a command failed (its decisions are not kept).
        """
        unstreamed = [
            self.key(d.transaction_id)
            for d, added in zip(decisions, replies[1::2], strict=True)
            if isinstance(added, Exception)
        ]
        if unstreamed:
            self.client.delete(*unstreamed)
        raise_first_error(replies)

    def keep_commands(self, decisions: Sequence[Decision]) -> list[tuple[Any, ...]]:
        """`keep` without the answers, as commands for the caller's transaction: the stream
        workers' fenced commit keeps its decisions in the same MULTI/EXEC as their stream
        entries and acks, so a transaction decided by a worker is found by id like one
        decided by the API. One script call for the batch (``EVAL``, not ``EVALSHA``: inside
        a MULTI a script missing from the server's cache would fail after the rest of the
        transaction applied); a ``SET`` per decision would cost the worker about as much as
        its ``XADD`` of the decision."""
        if not decisions:
            return []
        keys = [self.key(d.transaction_id) for d in decisions]
        return [("EVAL", KEEP_ALL_LUA, len(keys), *keys, self.ttl_s, *map(pack, decisions))]

    def queue_replace(self, pipe: Pipeline, decisions: Sequence[Decision]) -> None:
        """Keep these decisions in place of the ones kept (a step-up's final answer replaces
        the step-up: a retried request then gets the answer the challenge gave)."""
        for d in decisions:
            pipe.set(self.key(d.transaction_id), pack(d), ex=self.ttl_s)
