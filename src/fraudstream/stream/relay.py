"""A batch's commit on a Valkey Cluster: fenced per partition, then relayed exactly once.

On one node a batch's decisions, dead letters, acks and deletes go out in one MULTI fenced
by its leases (`fraudstream.stream.commit`). A cluster runs no transaction across slots, and
a batch spans its partitions' slots and the slot of the shared streams (decisions, dead
letters, labels: one hash tag, `fraudstream.stream.keys`). So the commit is two steps, each
atomic in one slot and each safe to run again:

1. **Fence, per partition** (`FENCE_LUA`, one script per partition of the batch, pipelined
   per node): if the batch's lease of the partition still stands, ack and delete the
   partition's entries and append what they decided (decisions and dead letters) to the
   partition's *outbox* stream, all or nothing. This is the exactly-once step, as the MULTI
   is on one node: an entry leaves its input stream in the same atomic step that records
   its outcome, and only under a lease that stands. A script run twice (a client retry after
   a lost reply) finds its entries acked already and adds nothing.
2. **Relay** (`RELAY_LUA`, one script on the shared slot): the outbox entries are appended
   to the shared streams in outbox order, skipping every entry not newer than the
   partition's relay mark (a hash field, same slot as the streams), which the script moves
   forward in the same atomic step. Whoever relays (the worker that committed, another lane,
   the partition's next owner after a crash) and however often, each outbox entry reaches
   ``tx.decisions`` once. Before it, each decision is kept by transaction id (``SET NX``,
   first writer wins, idempotent); the outbox is trimmed up to the mark by the partition's
   next fence.

What is left in an outbox by a crash between the steps is relayed by the partition's next
commit, or when a worker takes the partition (`ClusterCommitter.recover`). Labels (one
stream in the shared slot) are acked in the relay; their dead letters are added there, at
least once. Bounds: a replica promoted after its primary died may lack the primary's last
writes (replication is asynchronous): see docs/operations.md, "Cluster".
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from fraudstream.schema import Decision, Explanation
from fraudstream.stream.batch import Batch
from fraudstream.stream.commit import Committer, decision_entry, flat
from fraudstream.stream.consumer import DeadLetter
from fraudstream.stream.decided import pack
from fraudstream.stream.keys import GROUP
from fraudstream.stream.leases import Lease

# KEYS[1] = lease; KEYS[2] = lease generation counter; KEYS[3] = input stream; KEYS[4] = outbox.
# ARGV[1] = the batch's lease token; ARGV[2] = its generation; ARGV[3] = lease ttl (ms);
# ARGV[4] = consumer group; ARGV[5] = outbox ids below this are relayed, trimmed ('' = none);
# ARGV[6] = n, ARGV[7 .. 6+n] = the input entry ids; then per outbox entry: m, then m
# field/value arguments.
# Returns {-1} if the lease is lost (nothing done), {0, outbox} if these entries were acked
# already (a second run: nothing added), {1, outbox} once committed; outbox = the entries
# left to relay, as XRANGE gives them.
FENCE_LUA = """
local value = redis.call('GET', KEYS[1])
if value then
  if value ~= ARGV[1] then return {-1} end
else
  if tonumber(redis.call('GET', KEYS[2]) or '-1') ~= tonumber(ARGV[2]) then return {-1} end
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[3])
end
if ARGV[5] ~= '' then redis.call('XTRIM', KEYS[4], 'MINID', ARGV[5]) end
local n = tonumber(ARGV[6])
local status = 1
if n > 0 then
  local ids = {unpack(ARGV, 7, 6 + n)}
  if redis.call('XACK', KEYS[3], ARGV[4], unpack(ids)) == 0 then
    status = 0
  else
    redis.call('XDEL', KEYS[3], unpack(ids))
  end
end
local i = 7 + n
while status == 1 and i <= #ARGV do
  local m = tonumber(ARGV[i])
  redis.call('XADD', KEYS[4], '*', unpack(ARGV, i + 1, i + m))
  i = i + m + 1
end
return {status, redis.call('XRANGE', KEYS[4], '-', '+')}
"""

# KEYS[1] = relay marks (hash); KEYS[2] = decisions; KEYS[3] = dead letters; KEYS[4] = labels.
# ARGV[1] = decisions maxlen (approximate); ARGV[2] = consumer group;
# ARGV[3] = n, then n label entry ids (acked and deleted);
# then k, then k label dead letters as (m, m field/value arguments);
# then per partition: its name, its entry count, and per entry: outbox id, 'd' (decision) or
# 'x' (dead letter), m, m field/value arguments.
# Appends each outbox entry newer than its partition's mark, moves the mark; returns
# {partition, mark, …}.
RELAY_LUA = """
local function newer(a, b)
  local am, as = string.match(a, '(%d+)-(%d+)')
  local bm, bs = string.match(b, '(%d+)-(%d+)')
  if tonumber(am) ~= tonumber(bm) then return tonumber(am) > tonumber(bm) end
  return tonumber(as) > tonumber(bs)
end
local n = tonumber(ARGV[3])
if n > 0 then
  local ids = {unpack(ARGV, 4, 3 + n)}
  redis.call('XACK', KEYS[4], ARGV[2], unpack(ids))
  redis.call('XDEL', KEYS[4], unpack(ids))
end
local i = 4 + n
local k = tonumber(ARGV[i])
i = i + 1
for _ = 1, k do
  local m = tonumber(ARGV[i])
  redis.call('XADD', KEYS[3], '*', unpack(ARGV, i + 1, i + m))
  i = i + m + 1
end
local marks = {}
while i <= #ARGV do
  local part, count = ARGV[i], tonumber(ARGV[i + 1])
  i = i + 2
  local mark = redis.call('HGET', KEYS[1], part) or '0-0'
  for _ = 1, count do
    local id, kind, m = ARGV[i], ARGV[i + 1], tonumber(ARGV[i + 2])
    if newer(id, mark) then
      if kind == 'd' then
        redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[1], '*', unpack(ARGV, i + 3, i + 2 + m))
      else
        redis.call('XADD', KEYS[3], '*', unpack(ARGV, i + 3, i + 2 + m))
      end
      mark = id
    end
    i = i + 3 + m
  end
  redis.call('HSET', KEYS[1], part, mark)
  table.insert(marks, part)
  table.insert(marks, mark)
end
return marks
"""

KIND = b"_"
"""An outbox entry's destination: ``d`` the decisions, ``x`` the dead letters."""
KEPT = b"k"
"""A decision's outbox entry: its packed form, kept by id before it is relayed."""
TX_ID = b"i"
PRIVATE = (KIND, KEPT, TX_ID)

OutboxEntry = tuple[bytes, list[bytes]]
"""(outbox id, [field, value, field, value, …])."""


@dataclass
class _Part:
    """A partition's share of a batch."""

    lease: Lease
    ids: list[bytes] = field(default_factory=list)
    outbox: list[list[Any]] = field(default_factory=list)
    """Entries to append, each as flat field/value arguments."""


class ClusterCommitter(Committer):
    """`Committer`'s counterpart on a cluster (same `commit`, in the two steps above)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:  # Committer's
        super().__init__(*args, **kwargs)
        self.marks: dict[int, bytes] = {}
        """Partition -> its relay mark as last seen: the next fence trims up to it."""
        self.unsure: set[int] = set()
        """Partitions whose fence may have run without its relay (an error between)."""

    def commit(
        self,
        batch: Batch,
        decisions: Sequence[Decision],
        dead: list[DeadLetter],
        transactions: Mapping[str, bytes] | None = None,
        explanations: Mapping[str, Explanation] | None = None,
        origins: Sequence[str] = (),
    ) -> bool:
        """Fence each partition of the batch, then relay. ``origins``: the input stream of
        each decision. False if a lease of the batch was lost: that partition's entries
        were left alone (the others were committed)."""
        if self.unsure:
            self.recover(set(self.unsure))
        parts = self._parts(batch, decisions, dead, transactions or {}, explanations or {}, origins)
        self.unsure |= set(parts)
        outboxes, lost = self._fence_parts(parts)
        labels = [entry_id for s, entry_id, _ in batch.entries if s == self.keys.labels]
        label_dead = [d for d in dead if d["stream"] == self.keys.labels]
        self._relay(outboxes, labels, label_dead)
        self.unsure -= set(parts)
        return not lost

    def recover(self, partitions: Iterable[int]) -> None:
        """Relay what the outboxes of ``partitions`` still hold (a crash or an error came
        between a fence and its relay); idempotent."""
        partitions = sorted(partitions)
        pipe = self.client.pipeline(transaction=False)
        for p in partitions:
            pipe.xrange(self.keys.outbox(p))
        replies: list[Any] = pipe.execute()
        outboxes = {
            p: [(i, flat(f)) for i, f in reply]
            for p, reply in zip(partitions, replies, strict=True)
            if reply
        }
        self._relay(outboxes, [], [])
        self.unsure -= set(partitions)

    # --- step 1: the fence -------------------------------------------------------------------

    def _parts(
        self,
        batch: Batch,
        decisions: Sequence[Decision],
        dead: list[DeadLetter],
        transactions: Mapping[str, bytes],
        explanations: Mapping[str, Explanation],
        origins: Sequence[str],
    ) -> dict[int, _Part]:
        streams = {self.keys.input(lease.partition): lease for lease in batch.leases}
        parts = {lease.partition: _Part(lease) for lease in batch.leases}
        for stream, entry_id, _ in batch.entries:
            if stream in streams:
                parts[streams[stream].partition].ids.append(entry_id)
        for decision, stream in zip(decisions, origins, strict=True):
            tx = decision.transaction_id
            entry = decision_entry(decision, transactions.get(tx), explanations.get(tx))
            extra = {KIND: b"d", TX_ID: tx, KEPT: pack(decision)}
            parts[streams[stream].partition].outbox.append(flat({**entry, **extra}))
        for record in dead:
            if record["stream"] in streams:
                part = parts[streams[str(record["stream"])].partition]
                part.outbox.append(flat({**record, KIND: b"x"}))
        return {p: part for p, part in parts.items() if part.ids}

    def _fence_parts(
        self, parts: dict[int, _Part]
    ) -> tuple[dict[int, list[OutboxEntry]], list[int]]:
        """One script per partition, pipelined (a round trip per node): the outboxes to
        relay, and the partitions whose lease was lost."""
        pipe = self.client.pipeline(transaction=False)
        for p, part in parts.items():
            keys = [
                self.keys.lease(p),
                self.keys.lease_generation(p),
                self.keys.input(p),
                self.keys.outbox(p),
            ]
            args: list[Any] = [
                part.lease.token,
                part.lease.generation,
                self.lease_ttl_ms,
                GROUP,
                _after(self.marks.get(p)),
                len(part.ids),
                *part.ids,
            ]
            for entry in part.outbox:
                args += [len(entry), *entry]
            pipe.execute_command("EVAL", FENCE_LUA, len(keys), *keys, *args)  # type: ignore[no-untyped-call]
        outboxes: dict[int, list[OutboxEntry]] = {}
        lost = []
        for p, reply in zip(parts, pipe.execute(), strict=True):
            if int(reply[0]) < 0:
                lost.append(p)
            elif reply[1]:
                outboxes[p] = [(entry_id, list(fields)) for entry_id, fields in reply[1]]
        return outboxes, lost

    # --- step 2: the relay -------------------------------------------------------------------

    def _relay(
        self,
        outboxes: dict[int, list[OutboxEntry]],
        labels: list[bytes],
        label_dead: list[DeadLetter],
    ) -> None:
        if not (outboxes or labels or label_dead):
            return
        self._keep(outboxes)
        keys = [self.keys.relayed, self.keys.decisions, self.keys.deadletter, self.keys.labels]
        args: list[Any] = [self.decisions_maxlen, GROUP, len(labels), *labels, len(label_dead)]
        for record in label_dead:
            fields = flat(record)
            args += [len(fields), *fields]
        for p, entries in outboxes.items():
            args += [p, len(entries)]
            for entry_id, fields in entries:
                kind, public = _split(fields)
                args += [entry_id, kind, len(public), *public]
        reply: list[Any] = self.client.execute_command("EVAL", RELAY_LUA, len(keys), *keys, *args)  # type: ignore[no-untyped-call]
        for p, mark in zip(reply[::2], reply[1::2], strict=True):
            self.marks[int(p)] = mark

    def _keep(self, outboxes: dict[int, list[OutboxEntry]]) -> None:
        """Each decision kept by id before it is streamed (``SET NX``: a second keep of the
        same decision, or a decision kept first by the API, stays as it is)."""
        pipe = self.client.pipeline(transaction=False)
        queued = False
        for entries in outboxes.values():
            for _, fields in entries:
                named = dict(zip(fields[::2], fields[1::2], strict=True))
                if KEPT in named:
                    key = self.decided.key(named[TX_ID].decode())
                    pipe.set(key, named[KEPT], nx=True, ex=self.decided.ttl_s)
                    queued = True
        if queued:
            pipe.execute()


def _split(fields: list[bytes]) -> tuple[bytes, list[bytes]]:
    """(the entry's destination, its public fields) of an outbox entry."""
    kind = b"d"
    public: list[bytes] = []
    for name, value in zip(fields[::2], fields[1::2], strict=True):
        if name == KIND:
            kind = value
        elif name not in PRIVATE:
            public += [name, value]
    return kind, public


def _after(mark: bytes | None) -> str:
    """The smallest stream id above ``mark`` ('' for none): XTRIM MINID keeps ids >= it.

    >>> _after(b"1700000000000-4"), _after(None)
    ('1700000000000-5', '')
    """
    if mark is None:
        return ""
    ms, _, seq = mark.decode().partition("-")
    return f"{ms}-{int(seq) + 1}"
